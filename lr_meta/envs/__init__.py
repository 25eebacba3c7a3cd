"""lr_meta.envs: environments following the gymnax-style contract of toy.py."""

from lr_meta.envs.lr_env import ACTION_TYPES
from lr_meta.envs.lr_env import LREnv
from lr_meta.envs.lr_env import LREnvParams
from lr_meta.envs.lr_env import LREnvState
from lr_meta.envs.lr_env import OBSERVATIONS
from lr_meta.envs.lr_env import REWARDS
from lr_meta.envs.rollout import run_episode
from lr_meta.envs.rollout import run_episodes

__all__ = [
    "ACTION_TYPES", "OBSERVATIONS", "REWARDS", "LREnv", "LREnvParams",
    "LREnvState", "run_episode", "run_episodes",
]
