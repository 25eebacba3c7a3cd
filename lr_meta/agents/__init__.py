"""lr_meta.agents: RL agents that learn learning-rate controllers.

Each agent is built by a factory from a config, an environment following the
lr_meta.envs contract and its params, and returns pure functions
``init(key) -> state``, ``update_iteration(state) -> (state, metrics)`` and a
deterministic ``policy_fn``; the state is one checkpointable pytree.
"""

from lr_meta import _lazy

# Lazy: importing one agent (or lr_meta.agents._common) must not load the
# others' dependencies (flashbax for DQN, distrax for the Gaussian agents).
__getattr__, __dir__, __all__ = _lazy.attach(__name__, {
    "_common": ("evaluate_episodes", "gaussian"),
    "actor_critic": ("actor_critic_loss", "ActorCritic", "ActorCriticConfig",
                     "ActorCriticState", "make_actor_critic"),
    "dqn": ("DQN", "dqn_loss", "DQNConfig", "DQNState", "make_dqn",
            "Transition"),
    "ppo": ("gae_advantages", "make_ppo", "make_ppo_train=make_train", "PPO",
            "PPOConfig", "ppo_loss", "PPOState"),
    "reps": ("linear_controller", "make_reps", "REPS", "REPSConfig",
             "reps_update", "REPSState", "SearchDistribution", "solve_dual"),
    "lr_meta.policies.networks": ("Critic", "GaussianActor", "LSTMActor",
                                  "MLP", "QNetwork"),
})
