"""Per-step (K = 1) actor-critic LR control (Xu, Qin, Wang & Liu 2017).

  python scripts/train_controller.py \
      --config configs/xu2017_actor_critic_per_step.py --workdir runs/xu2017_k1

``configs/xu2017_actor_critic.py`` with the paper's decision frequency: the
actor sets the LR of EVERY inner step (300 decisions x K = 1 = the same 300
steps, batch 128, Fashion-MNIST MLP(128)), so it compares with the same tuned
baselines (BUILD_NOTES, per-step actor-critic). What changes with K = 1, and why:

* ``num_val_examples=128``: the validation probe (reward and 'dynamics'
  observation) now runs after every step instead of every 10th; with 1000
  examples a K = 1 decision of 8 envs took 3.0x as long (49.9 vs 16.4 ms,
  BUILD_NOTES, per-step actor-critic).
* ``gamma=0.99``: a horizon of ~100 decisions = ~100 steps, as 0.9 gave ~10
  decisions x K = 10 before.
* ``ema_decay=0.8 ** 0.1``: the dynamics EMAs (per decision) keep their
  time constant in steps (~50 steps).
* ``actor_lr=1e-4, critic_lr=5e-4``: the parent's Adam LRs / 10, since an
  episode now makes 10x more updates (same drift per episode). With the
  parent's 1e-3 / 5e-3 the actor drove the LR down to ~0.01 and the result
  was far worse (BUILD_NOTES, per-step actor-critic).
* 120 iterations (~11 min on 2 shared CPU cores). Training oscillates (the
  mean action swings between -2.4 and +0.9 decades around lr0); the
  evaluation protocol picks the snapshot by validation loss (iteration 15).
"""

from lr_meta import config as config_lib

xu2017_actor_critic = config_lib.sibling(__file__, "xu2017_actor_critic")


def get_config():
  config = xu2017_actor_critic.get_config()
  config.env.update(steps_per_decision=1, num_decisions=300,
                    num_val_examples=128, ema_decay=0.8 ** 0.1)
  config.actor_critic.update(gamma=0.99, actor_lr=1e-4, critic_lr=5e-4)
  config.num_iterations = 120
  config.checkpoint_every = 5
  return config
