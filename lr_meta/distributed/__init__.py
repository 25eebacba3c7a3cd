"""Beyond one machine: JAX's multi-process runtime for lr_meta's long jobs.

``runtime``: the launch flags and ``initialize_or_launch`` (one process of a
job, the local launcher, or a single process); ``launcher``: the local
launcher; ``sharding``: the population axis over every process's devices,
gathering and broadcasting. Imports only JAX (absl for the flags).

A script::

  distributed.define_flags()

  def main(argv):
    distributed.initialize_or_launch(distributed.config_from_flags())
    mesh = distributed.global_mesh()
    ...                                  # same code on every process
    if distributed.is_main_process():
      ...                                # files
"""

from lr_meta.distributed.launcher import free_port
from lr_meta.distributed.launcher import launch
from lr_meta.distributed.runtime import config_from_flags
from lr_meta.distributed.runtime import define_flags
from lr_meta.distributed.runtime import initialize
from lr_meta.distributed.runtime import initialize_or_launch
from lr_meta.distributed.runtime import is_main_process
from lr_meta.distributed.runtime import RuntimeConfig
from lr_meta.distributed.sharding import broadcast_from_main
from lr_meta.distributed.sharding import broadcast_json
from lr_meta.distributed.sharding import gather_json
from lr_meta.distributed.sharding import gather_rows
from lr_meta.distributed.sharding import global_mesh
from lr_meta.distributed.sharding import host_copy
from lr_meta.distributed.sharding import job_mesh
from lr_meta.distributed.sharding import local_mesh
from lr_meta.distributed.sharding import map_rows
from lr_meta.distributed.sharding import POPULATION_AXIS
from lr_meta.distributed.sharding import process_rows
from lr_meta.distributed.sharding import replicate
from lr_meta.distributed.sharding import shard_population
from lr_meta.distributed.sharding import spans_processes

__all__ = [
    "POPULATION_AXIS", "RuntimeConfig", "broadcast_from_main",
    "broadcast_json", "config_from_flags", "define_flags", "free_port",
    "gather_json", "gather_rows", "global_mesh", "host_copy", "initialize",
    "initialize_or_launch", "is_main_process", "job_mesh", "launch",
    "local_mesh", "map_rows", "process_rows", "replicate", "shard_population",
    "spans_processes",
]
