"""A generalist LR controller: PPO over a distribution of training tasks.

The distribution holds ONLY the (data set, model, base optimizer)
combinations of the ``train`` side of benchmark suite ``cpu_v1`` (the suite
this controller was trained and first scored on; ``lr_meta.benchmark``),
each centred on that workload's default LR; members draw MLP depths and
widths, batch sizes and training subsets, episodes draw the initial LR
(log-uniform over x3 either side) and the run length (log-uniform in
100..1000 steps: the held-out horizons are >= 2x the longest). The
observation is scale-free (``lr_meta.features.scale_free``: loss and
validation loss only), the action sets the LR relative to the run's initial
one (``'xu2017'``: ``lr = lr0 * 10 ** clip(a, -4, 2)``) at 20 fixed
fractions of any run,
and the reward is the change of the log validation loss (its sum is
``log(first / last validation loss)``, one scale for every task).

  python scripts/train_generalist.py --config configs/generalist.py \
      --workdir runs/generalist

CPU-sized (2 cores); on an accelerator raise ``distribution.num_members``
and ``ppo.num_envs`` (``batch_mode='vmap'`` batches a member's episodes).
"""

import ml_collections

from lr_meta import benchmark


def train_side(suite: str = "cpu_v1", include_conv: bool = True):
  """``[dataset, model, optimizer, default_lr]`` of the suite's train side
  (``include_conv=False``: its MLP workloads only)."""
  seen, out = set(), []
  for w in benchmark.select(benchmark.get_suite(suite), benchmark.TRAIN):
    key = (w.dataset, w.model, w.optimizer)
    if key not in seen and (include_conv or w.model == "mlp"):
      seen.add(key)
      out.append([w.dataset, w.model, w.optimizer, float(w.initial_lr)])
  return out


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.agent = "ppo"
  # The shipped generalist's recipe: suite cpu_v1's train side (SGD and
  # momentum MLPs). Suite cpu (v2) moved Adam workloads to its train side.
  config.suite = "cpu_v1"
  config.distribution = ml_collections.ConfigDict(dict(
      # [dataset, model, optimizer, default_lr, weight]. CPU-sized: the
      # train side's MLPs only; a LeNet-5 episode of 1000 steps at batch 128
      # costs ~100x an MLP's on 2 shared cores. Set include_conv=True on an
      # accelerator.
      combinations=[c + [1.0] for c in train_side("cpu_v1",
                                                   include_conv=False)],
      num_members=8,
      mlp_depths=(1, 3),
      mlp_widths=(32, 64, 128, 256),
      batch_sizes=(32, 64, 128),
      train_fractions=(1.0, 0.5, 0.2),
      # x3 either side of the default LR. At x10 (the first attempt) the
      # episodes from 10x the default diverged (-10) and PPO learned to decay
      # every run ~20x, which lost to the constant default LR on the train
      # side (score 1.06 -> 1.12 over 40 iterations).
      lr0_spread=3.0,
      num_steps_range=(100, 1000)))
  config.env = ml_collections.ConfigDict(dict(
      # Sets log10(lr / lr0) (the shipped generalist; train-side score
      # 0.957). The multiplicative 'daniel2016' (lr * exp(a)) learned only to
      # decay (best 1.013): each decision's effect compounds into all later
      # LRs, while a set action lets one decision undo another.
      action_type="xu2017",
      observation="scale_free",
      num_decisions=20,
      reward="log_val_loss_change",
      divergence_penalty=-10.0,
      num_val_examples=500,
      slope_decay=0.5))
  config.ppo = ml_collections.ConfigDict(dict(
      num_envs=8, gamma=0.99, gae_lambda=0.95, clip_epsilon=0.2,
      num_epochs=10, num_minibatches=2, actor_lr=1e-3, critic_lr=5e-3,
      max_grad_norm=5.0, entropy_coef=0.0, normalize_advantages=True,
      actor="mlp", hidden_size=32, action_std=0.2, learn_log_std=False))
  config.batch_mode = ""          # '' = measured default (sequential on CPU)
  config.num_iterations = 400
  config.checkpoint_every = 10
  # Train-side score (the benchmark's train workloads, deterministic
  # controller from each workload's default LR, final validation loss over
  # the default constant LR's) every score_every iterations; 0 = never.
  config.score_every = 20
  config.score_seeds = 1
  config.score_workloads = ()     # () = every train workload of the suite
  return config
