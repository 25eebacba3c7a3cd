"""lr_meta.agents: RL agents that learn learning-rate controllers.

Each agent is built by a factory from a config, an environment following the
lr_meta.envs contract and its params, and returns pure functions
``init(key) -> state``, ``update_iteration(state) -> (state, metrics)``, the
deterministic ``policy_fn(params, obs, carry) -> (action, carry)`` (one
contract for every agent, shared with ``lr_meta.policies.Controller.act``)
and ``initial_carry(batch_shape)``; the state is one checkpointable pytree.
Every agent module also has ``make_train(config, env, env_params,
num_iterations) -> train(rng)``, the whole training as one jittable function
(purejaxrl style).
"""

from lr_meta import _lazy

# Lazy: importing one agent (or lr_meta.agents._common) must not load the
# others' dependencies (flashbax for DQN, distrax for the Gaussian agents).
__getattr__, __dir__, __all__ = _lazy.attach(__name__, {
    "_common": ("evaluate_episodes",),
    "gaussian_ac": ("gaussian", "GaussianActorCritic", "LearnerState",
                    "make_gaussian_actor_critic"),
    "actor_critic": ("actor_critic_loss", "ActorCritic", "ActorCriticConfig",
                     "ActorCriticState", "make_actor_critic",
                     "make_actor_critic_train=make_train"),
    "dqn": ("DQN", "dqn_loss", "DQNConfig", "DQNState", "make_dqn",
            "make_dqn_train=make_train", "Transition"),
    "ppo": ("gae_advantages", "make_ppo", "make_ppo_train=make_train", "PPO",
            "PPOConfig", "ppo_loss", "PPOState"),
    "reps": ("linear_controller", "make_reps", "make_reps_over_tasks",
             "make_reps_train=make_train",
             "make_reps_over_tasks_train=make_train_over_tasks", "REPS",
             "REPSConfig", "reps_update", "REPSState", "SearchDistribution",
             "solve_dual"),
    "lr_meta.policies.networks": ("Critic", "GaussianActor", "LSTMActor",
                                  "MLP", "QNetwork"),
})
