"""Neural Optimizer Search: score rules in batches, train the controller.

Bello et al. 2017, sections 3.2-3.3 and 4.2. Each iteration the controller
(`lr_meta.nos.controller`) samples a batch of token programs; every new rule
is scored the paper's way, scaled by `ScoringConfig`:

1. a learning-rate sweep ``10^i, i = -5 .. 1`` (paper: 1 epoch on 10k
   CIFAR-10 examples), picking the LR with the best validation accuracy;
2. training the child network with that LR (paper: 5 epochs);
3. reward = held-out validation accuracy; a rule whose run diverges (NaN/inf
   loss or update, or loss above the task's cap: `Task.train_step` freezes
   such runs) gets ``min_reward`` and the search goes on.

Scoring compiles ONCE for every rule: the token program is data in the
optimizer state (`optax.inject_hyperparams` over
`interpreter.program_optimizer`), so the sweep of K rules x L learning rates
is one jitted program, run on the execution grid of
`lr_meta.tasks.optax_training.run_batch` (the one engine of whole training
runs; the rule is a hyperparameter of `TaskOptimizer`): vmapped
(`batch_mode='vmap'`), one compiled run after another ('sequential': conv
nets on CPU, see
`lr_meta.runner`), or vmapped with the run axis sharded over a device mesh
('sharded'). A `Scorer` given a mesh over several processes
(``lr_meta.distributed.global_mesh()``) splits each batch of runs over the
processes and gathers the scores on every process, so every process makes
the same controller update. Duplicate rules (same canonical expression) are
scored once (`Search.cache`).

The controller is trained with PPO (Schulman et al. 2017; rlax clipped
surrogate) against an exponential moving average of rewards as baseline, with
an entropy bonus of 0.0015 and Adam (paper: learning rate 1e-5, batch 5).

Everything that changes during a search is `SearchState` (a pytree) plus the
cache and history (plain data, `Search.cache` and `Search.history`);
`scripts/search_optimizer.py` checkpoints them in its run directory
(`lr_meta.rundir`), so a killed search resumes where it was.
"""

import dataclasses
import time
from typing import Any, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax

from lr_meta import checks
from lr_meta import distributed
from lr_meta import runner
from lr_meta import tasks
from lr_meta.tasks import optax_training
from lr_meta.nos import controller as controller_lib
from lr_meta.rules import interpreter
from lr_meta.rules import programs as programs_lib
from lr_meta.rules import vocabulary as voc
from lr_meta.tasks.task import Task

__all__ = (
    "PAPER_SWEEP_LRS",
    "Record",
    "RuleSearchPPOConfig",
    "RunResult",
    "Scorer",
    "Scores",
    "ScoringConfig",
    "Search",
    "SearchState",
    "controller_optimizer",
    "ema_baseline",
    "ppo_loss",
    "ppo_update",
    "rule_task",
    "train_rules",
)

# Paper section 4.2: LR sweep 10^i, i = -5 .. 1.
PAPER_SWEEP_LRS = tuple(10.0 ** i for i in range(-5, 2))
BATCH_MODES = tasks.BATCH_MODES


# ---------------------------------------------------------------------------
# Training a child network with a (traced) rule.
# ---------------------------------------------------------------------------


def _rule_optimizer(program, learning_rate, decay_steps):
  # Explicit signature: inject_hyperparams reads it to find the numeric
  # hyperparameters (program and learning_rate become optimizer state).
  return interpreter.program_optimizer(program, learning_rate, decay_steps)


def rule_task(task: Task, num_groups: int, num_steps: int) -> Task:
  """`task` with an optimizer whose rule is a (G, 5) array in its state.

  The program lives in ``opt_state.hyperparams['program']`` next to the
  learning rate, so `Task.train_step` (divergence freezing included) runs
  any rule without recompiling; a run writes it at init as the
  ``'program'`` hyperparameter of `optax_training.TaskOptimizer`.
  """
  optimizer = optax.inject_hyperparams(
      _rule_optimizer, static_args=("decay_steps",))(
          program=jnp.zeros((num_groups, voc.GROUP_SIZE), jnp.int32),
          learning_rate=0.0, decay_steps=num_steps)
  return task.replace(optimizer=optimizer)


class RunResult(NamedTuple):
  """Validation metrics at the end of a run (diverged runs: accuracy 0)."""
  accuracy: chex.Array
  loss: chex.Array
  diverged: chex.Array


def train_rules(task: Task, programs, learning_rates, keys, *,
                num_steps: int, num_val_examples: Optional[int] = None,
                batch_mode: str = "vmap", strategy: Optional[str] = None,
                segment_steps: int = 50,
                mesh: Optional[jax.sharding.Mesh] = None) -> RunResult:
  """Trains R children: run r with rule ``programs[r]`` at ``learning_rates[r]``.

  `optax_training.run_batch` of `TaskOptimizer` with the rule as its
  ``'program'`` hyperparameter: every rule shares one compiled program (the
  rule is data), and the runs are validated once, at the end.

  Args:
    task: a `rule_task` (its optimizer reads the rule from its state).
    programs: int32 (R, G, 5) with G the task's number of groups.
    learning_rates: float (R,), constant per run.
    keys: (R,) PRNG keys (init, batches, dropout, the rule's noise).
    num_steps: training steps per run.
    num_val_examples: validate on the first examples (None: whole split).
    batch_mode: 'vmap', 'sequential' or 'sharded' (run axis over `mesh`,
      default every device; R is padded to a multiple of the mesh size).
    strategy: 'scan' (whole run in one jit), 'chunk' (jitted pieces of
      `segment_steps` unrolled steps) or 'loop' (jitted single steps); default
      `runner.default_strategy`.
    segment_steps: steps per compiled piece for 'chunk'.
    mesh: device mesh for 'sharded' (`lr_meta.tasks.run_mesh`), or over
      several processes (``lr_meta.distributed.global_mesh()``): each
      process trains its block of the runs (on its own devices of the mesh)
      and only the `RunResult` numbers are gathered, not the children.

  Returns:
    `RunResult` with leading axis R, the same on every process.
  """
  if distributed.spans_processes(mesh):
    local = distributed.local_mesh(mesh)
    return distributed.map_rows(
        lambda rows: train_rules(
            task, *rows, num_steps=num_steps,
            num_val_examples=num_val_examples, batch_mode=batch_mode,
            strategy=strategy, segment_steps=segment_steps, mesh=local),
        (programs, learning_rates, keys), mesh)
  programs = jnp.asarray(programs, jnp.int32)
  learning_rates = jnp.asarray(learning_rates, jnp.float32)
  chex.assert_rank([programs, learning_rates], [3, 1])
  chex.assert_equal_shape_prefix([programs, learning_rates, keys], 1)
  schedule = jnp.broadcast_to(learning_rates[:, None],
                              (learning_rates.shape[0], num_steps))
  state, metrics = optax_training.run_batch(
      task, optax_training.TaskOptimizer(),
      {"learning_rates": schedule, "program": programs}, keys, num_steps,
      eval_every=num_steps, chunk_steps=segment_steps, strategy=strategy,
      batch_mode=batch_mode, num_val_examples=num_val_examples, mesh=mesh,
      final_eval=False)
  return RunResult(metrics.val.accuracy[:, -1], metrics.val.loss[:, -1],
                   state.diverged)


# ---------------------------------------------------------------------------
# Scoring rules: LR sweep, then training with the best LR.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
  """How a rule is scored (paper section 4.2, scaled down by default).

  Paper scale: dataset 'cifar10', model 'nos_convnet', batch_size 100,
  sweep_train_examples 10_000, sweep_steps 100 (1 epoch), train_steps 2_000
  (5 epochs of 40k), num_val_examples 5_000.

  Attributes:
    dataset, model, model_kwargs, batch_size: the child task
      (`lr_meta.tasks.make_task`).
    num_train_examples: training examples of the child (None: all).
    num_val_examples: held-out validation examples (reward and sweep).
    sweep_train_examples: training subset of the LR sweep (None: same).
    sweep_lrs: learning rates of the sweep.
    sweep_steps: steps per sweep run.
    train_steps: steps of the final training with the best LR.
    min_reward: reward of a rule that diverges.
    batch_mode: 'vmap' / 'sequential' / 'sharded' (None: measured default
      for the model, `runner.default_batch_mode`).
    strategy: 'scan' / 'chunk' (None: `runner.default_strategy`).
    num_groups: G of the padded programs (>= the search space's).
    num_seeds: seeds of the final training; the reward is their mean
      accuracy (less noise in the leaderboard's maximum). The sweep uses one.
  """
  dataset: str = "mnist1d"
  model: str = "mlp"
  model_kwargs: Any = None
  batch_size: int = 64
  num_train_examples: Optional[int] = None
  num_val_examples: Optional[int] = None
  sweep_train_examples: Optional[int] = 1000
  sweep_lrs: tuple = PAPER_SWEEP_LRS
  sweep_steps: int = 100
  train_steps: int = 300
  min_reward: float = 0.0
  batch_mode: Optional[str] = None
  strategy: Optional[str] = None
  num_groups: int = 2
  num_seeds: int = 1


class Scores(NamedTuple):
  """Per rule: reward, chosen LR, sweep accuracies (K, L), diverged."""
  reward: np.ndarray
  learning_rate: np.ndarray
  sweep_accuracy: np.ndarray
  diverged: np.ndarray


class Scorer:
  """Scores batches of rules on one child task (see `ScoringConfig`)."""

  def __init__(self, config: ScoringConfig, data_dir: Optional[str] = None,
               mesh: Optional[jax.sharding.Mesh] = None):
    for name in ("sweep_steps", "train_steps", "batch_size", "num_groups",
                 "num_seeds"):
      value = getattr(config, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"ScoringConfig.{name}={value!r}; allowed: an "
                         "integer >= 1")
    checks.check_positive_floats("ScoringConfig.sweep_lrs", config.sweep_lrs)
    self.config = config
    self.mesh = mesh
    base = tasks.make_task(
        config.dataset, config.model, model_kwargs=config.model_kwargs,
        batch_size=config.batch_size,
        num_train_examples=config.num_train_examples,
        num_val_examples=config.num_val_examples, data_dir=data_dir)
    if base.objective.per_example_metric is None:
      raise ValueError(
          f"ScoringConfig model={config.model!r} trains on loss "
          f"{base.loss!r}, which has no accuracy; a rule's reward is its "
          "validation accuracy (Bello et al. 2017, section 4.2): score "
          "rules on a classifier or language model.")
    self.batch_mode = config.batch_mode or runner.default_batch_mode(
        config.model)
    if self.batch_mode not in BATCH_MODES:
      raise ValueError(f"ScoringConfig.batch_mode={self.batch_mode!r}; "
                       f"allowed: {BATCH_MODES} or None")
    self.train_task = rule_task(base, config.num_groups, config.train_steps)
    sweep = rule_task(base, config.num_groups, config.sweep_steps)
    if config.sweep_train_examples is not None:
      # Examples are windows of context_length tokens on sequence data.
      n = config.sweep_train_examples * (base.context_length or 1)
      sweep = sweep.replace(data=sweep.data.replace(
          x_train=sweep.data.x_train[:n], y_train=sweep.data.y_train[:n]))
    self.sweep_task = sweep

  def programs(self, rules) -> np.ndarray:
    """Rules (readable strings or token programs) -> int32 (K, G, 5)."""
    return interpreter.pad_programs(
        [programs_lib.to_program(r) for r in rules], self.config.num_groups)

  def _train(self, task, programs, lrs, keys, num_steps):
    return train_rules(task, programs, lrs, keys, num_steps=num_steps,
                       num_val_examples=self.config.num_val_examples,
                       batch_mode=self.batch_mode,
                       strategy=self.config.strategy, mesh=self.mesh)

  def score(self, rules, key: chex.PRNGKey) -> Scores:
    """Scores K rules: sweep K x L runs, then K runs at the best LRs.

    All runs use the same `key` (common random numbers: differences in
    reward come from the rules, not from the child's initialisation), so a
    rule's score does not depend on the other rules of the batch.
    """
    config = self.config
    programs = self.programs(rules)
    num_rules, num_lrs = programs.shape[0], len(config.sweep_lrs)
    sweep_key, train_key = jax.random.split(key)
    lrs = np.asarray(config.sweep_lrs, np.float32)
    sweep = self._train(self.sweep_task, np.repeat(programs, num_lrs, 0),
                        np.tile(lrs, num_rules),
                        _repeat_key(sweep_key, num_rules * num_lrs),
                        config.sweep_steps)
    sweep_acc = np.asarray(sweep.accuracy).reshape(num_rules, num_lrs)
    sweep_acc = np.where(np.isfinite(sweep_acc), sweep_acc, 0.0)
    best_lr = lrs[np.argmax(sweep_acc, axis=1)]
    seeds = config.num_seeds
    seed_keys = jax.random.split(train_key, seeds) if seeds > 1 else (
        train_key[None])
    final = self._train(self.train_task, np.repeat(programs, seeds, 0),
                        np.repeat(best_lr, seeds),
                        jnp.tile(seed_keys, (num_rules, 1)),
                        config.train_steps)
    accuracy = np.asarray(final.accuracy).reshape(num_rules, seeds)
    diverged = np.any(np.asarray(final.diverged).reshape(num_rules, seeds)
                      | ~np.isfinite(accuracy), axis=1)
    reward = np.where(diverged, config.min_reward, accuracy.mean(axis=1))
    return Scores(reward.astype(np.float32), best_lr, sweep_acc, diverged)


def _repeat_key(key, n):
  return jnp.broadcast_to(key, (n,) + key.shape)


# ---------------------------------------------------------------------------
# PPO on the controller.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RuleSearchPPOConfig:
  """PPO training of the rule-writing controller (paper section 4.2).

  Attributes:
    learning_rate: Adam learning rate (paper 1e-5).
    batch_size: rules sampled per iteration (paper 5).
    entropy_coef: entropy bonus weight (the paper's "entropy penalty"
      0.0015).
    clip_epsilon: PPO clip.
    num_epochs: PPO updates per batch.
    baseline_decay: EMA decay of the reward baseline.
    max_grad_norm: gradient clipping (None: off).
  """
  learning_rate: float = 1e-5
  batch_size: int = 5
  entropy_coef: float = 0.0015
  clip_epsilon: float = 0.2
  num_epochs: int = 4
  baseline_decay: float = 0.9
  max_grad_norm: Optional[float] = None


def controller_optimizer(
    config: RuleSearchPPOConfig) -> optax.GradientTransformation:
  """Adam (after gradient clipping when `config.max_grad_norm` is set)."""
  adam = optax.adam(config.learning_rate)
  if config.max_grad_norm is None:
    return adam
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)


def ppo_loss(params, space, programs, old_log_prob, advantages,
             clip_epsilon, entropy_coef):
  """Clipped surrogate (Schulman et al. 2017, eq. 7) minus entropy bonus."""
  new = controller_lib.log_prob(params, space, programs)
  ratio = jnp.exp(new.log_prob - old_log_prob)
  surrogate = rlax.clipped_surrogate_pg_loss(ratio, advantages, clip_epsilon)
  entropy = jnp.mean(new.entropy)
  return surrogate - entropy_coef * entropy, (surrogate, entropy)


def ppo_update(params, opt_state, space, config: RuleSearchPPOConfig,
               programs, old_log_prob, advantages):
  """`config.num_epochs` full-batch PPO steps (a lax.scan); jit-able."""
  optimizer = controller_optimizer(config)
  grad_fn = jax.grad(ppo_loss, has_aux=True)

  def epoch(carry, _):
    params, opt_state = carry
    grads, aux = grad_fn(params, space, programs, old_log_prob, advantages,
                         config.clip_epsilon, config.entropy_coef)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), aux

  (params, opt_state), (surrogate, entropy) = jax.lax.scan(
      epoch, (params, opt_state), None, length=config.num_epochs)
  return params, opt_state, surrogate[0], entropy[0]


def ema_baseline(baseline, count, rewards, decay):
  """EMA of the batch-mean reward; the first batch sets it (count == 0)."""
  mean = jnp.mean(rewards)
  return jnp.where(count == 0, mean, decay * baseline + (1 - decay) * mean)


# ---------------------------------------------------------------------------
# The search loop.
# ---------------------------------------------------------------------------


# Module-level jits keyed by the (hashable) space and PPO config, so every
# `Search` over the same space (e.g. one restored from a checkpoint) reuses
# the compiled sampler and update.
_sample_jit = jax.jit(controller_lib.sample, static_argnums=(1, 3))
_update_jit = jax.jit(ppo_update, static_argnums=(2, 3))


class SearchState(NamedTuple):
  """Everything of the search that is arrays (checkpointed as one pytree)."""
  params: Any
  opt_state: Any
  baseline: chex.Array      # float32: EMA of rewards
  iteration: chex.Array     # int32: iterations done
  key: chex.PRNGKey         # raw uint32[2]


class Record(NamedTuple):
  """One iteration of the search (a row of the reward curve)."""
  iteration: int
  mean_reward: float
  max_reward: float
  best_so_far: float
  baseline: float
  num_scored: int          # rules scored (not found in the cache)
  num_unique_total: int
  entropy: float
  seconds: float


class Search:
  """PPO search over a `SearchSpace`, scoring with a `Scorer`.

  Usage::

    search = Search(space, ppo_config, scorer, seed=0)
    state = search.init()
    for _ in range(100):
      state, record = search.step(state)
    search.leaderboard(10)
  """

  def __init__(self, space: controller_lib.SearchSpace,
               ppo: RuleSearchPPOConfig, scorer: Scorer, seed: int = 0):
    if scorer.config.num_groups < space.num_groups:
      raise ValueError(f"ScoringConfig.num_groups={scorer.config.num_groups}"
                       f" is smaller than the search space's num_groups="
                       f"{space.num_groups}")
    if not isinstance(ppo.batch_size, int) or ppo.batch_size < 1:
      raise ValueError(f"RuleSearchPPOConfig.batch_size={ppo.batch_size!r}; "
                       "allowed: an integer >= 1")
    self.space, self.ppo, self.scorer, self.seed = space, ppo, scorer, seed
    self.cache: dict[str, dict] = {}
    self.history: list[Record] = []
    self._sample = lambda p, k: _sample_jit(p, space, k, ppo.batch_size)
    self._update = lambda p, o, x, lp, a: _update_jit(p, o, space, ppo, x,
                                                      lp, a)

  def init(self) -> SearchState:
    init_key, key = jax.random.split(jax.random.PRNGKey(self.seed))
    params = controller_lib.init_params(self.space, init_key)
    return SearchState(params=params,
                       opt_state=controller_optimizer(self.ppo).init(params),
                       baseline=jnp.zeros((), jnp.float32),
                       iteration=jnp.zeros((), jnp.int32), key=key)

  def rewards(self, programs: np.ndarray, key) -> np.ndarray:
    """Rewards of sampled programs; new rules are scored in one batch.

    The batch is padded to the controller batch size with copies, so every
    iteration runs the same compiled program.
    """
    names = [programs_lib.format_program(p) for p in programs]
    new = list(dict.fromkeys(n for n in names if n not in self.cache))
    if new:
      first = {n: i for i, n in reversed(list(enumerate(names)))}
      batch = [programs[first[n]] for n in new]
      batch += [batch[0]] * (len(programs) - len(batch))
      scores = self.scorer.score(batch, key)
      for i, name in enumerate(new):
        self.cache[name] = dict(
            reward=float(scores.reward[i]),
            learning_rate=float(scores.learning_rate[i]),
            diverged=bool(scores.diverged[i]),
            program=np.asarray(programs[first[name]]).tolist(),
            iteration=int(len(self.history)))
    self._num_scored = len(new)
    return np.asarray([self.cache[n]["reward"] for n in names], np.float32)

  def step(self, state: SearchState):
    """Sample, score, PPO-update; returns (new state, Record)."""
    start = time.time()
    key, sample_key, score_key = jax.random.split(state.key, 3)
    sample = self._sample(state.params, sample_key)
    rewards = self.rewards(np.asarray(sample.programs), score_key)
    advantages = jnp.asarray(rewards) - jnp.where(
        state.iteration == 0, jnp.mean(rewards), state.baseline)
    params, opt_state, _, entropy = self._update(
        state.params, state.opt_state, sample.programs, sample.log_prob,
        advantages)
    baseline = ema_baseline(state.baseline, state.iteration, rewards,
                            self.ppo.baseline_decay)
    state = SearchState(params, opt_state, baseline, state.iteration + 1, key)
    best = max(v["reward"] for v in self.cache.values())
    record = Record(iteration=int(state.iteration), mean_reward=float(
        np.mean(rewards)), max_reward=float(np.max(rewards)),
                    best_so_far=float(best), baseline=float(baseline),
                    num_scored=self._num_scored,
                    num_unique_total=len(self.cache),
                    entropy=float(entropy), seconds=time.time() - start)
    self.history.append(record)
    return state, record

  def leaderboard(self, k: int = 10):
    """The k best rules: list of dicts (rule, reward, learning_rate, ...)."""
    rows = sorted(self.cache.items(), key=lambda kv: -kv[1]["reward"])[:k]
    return [dict(rule=name, **value) for name, value in rows]
