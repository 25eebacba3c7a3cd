"""lr_meta.agents: RL agents that learn learning-rate controllers.

Each agent is built by a factory from a config, an environment following the
lr_meta.envs contract and its params, and returns pure functions
``init(key) -> state``, ``update_iteration(state) -> (state, metrics)`` and a
deterministic ``policy_fn``; the state is one checkpointable pytree.
"""

from lr_meta.agents._common import evaluate_episodes
from lr_meta.agents._common import gaussian
from lr_meta.agents.actor_critic import actor_critic_loss
from lr_meta.agents.actor_critic import ActorCritic
from lr_meta.agents.actor_critic import ActorCriticConfig
from lr_meta.agents.actor_critic import ActorCriticState
from lr_meta.agents.actor_critic import make_actor_critic
from lr_meta.agents.dqn import DQN
from lr_meta.agents.dqn import dqn_loss
from lr_meta.agents.dqn import DQNConfig
from lr_meta.agents.dqn import DQNState
from lr_meta.agents.dqn import make_dqn
from lr_meta.agents.dqn import Transition
from lr_meta.policies.networks import Critic
from lr_meta.policies.networks import GaussianActor
from lr_meta.policies.networks import LSTMActor
from lr_meta.policies.networks import MLP
from lr_meta.policies.networks import QNetwork
from lr_meta.agents.ppo import gae_advantages
from lr_meta.agents.ppo import make_ppo
from lr_meta.agents.ppo import make_train as make_ppo_train
from lr_meta.agents.ppo import PPO
from lr_meta.agents.ppo import PPOConfig
from lr_meta.agents.ppo import ppo_loss
from lr_meta.agents.ppo import PPOState
from lr_meta.agents.reps import linear_controller
from lr_meta.agents.reps import make_reps
from lr_meta.agents.reps import REPS
from lr_meta.agents.reps import REPSConfig
from lr_meta.agents.reps import reps_update
from lr_meta.agents.reps import REPSState
from lr_meta.agents.reps import SearchDistribution
from lr_meta.agents.reps import solve_dual
