"""Export a trained controller into the package (lr_meta/pretrained/NAME.msgpack).

  python scripts/export_controller.py --workdir runs/quickstart --name NAME \
      [--description "..."] [--out_dir lr_meta/pretrained]

Reads ``WORKDIR/controller.msgpack`` (written at the end of
``scripts/train_controller.py``), renames it NAME, checks it (format, checksum,
params vs network) and writes ``OUT_DIR/NAME.msgpack``; prints its spec.

To export another set of params of the same run (e.g. a best-validation snapshot
picked by ``scripts/evaluate_controller.py``), or from a workdir trained before
``controller.msgpack`` existed, name the params file; the controller is then
rebuilt from the run's ``config.json`` (or ``--config`` with the same
overrides)::

  python scripts/export_controller.py --workdir runs/fmnist --name NAME \
      --params runs/fmnist/snapshots/iter_000150.msgpack
"""

import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import flax
import ml_collections
from ml_collections import config_flags

from lr_meta import experiment
from lr_meta.policies import controller as controller_lib

def from_params_file(config, params_path, name, data_dir=None):
  """Rebuilds the controller from an agent-params file and the config."""
  _, env, env_params, _ = experiment.build(config, data_dir)
  with open(params_path, "rb") as f:
    agent_params = flax.serialization.msgpack_restore(f.read())
  return experiment.controller_from_training(
      config, env, env_params, agent_params, name=name)


def _read_config(workdir, config):
  if config is not None:
    return config
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{path} does not exist; pass --config (the training "
                     "config with the same overrides).")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def export(workdir, name, out_dir=controller_lib.PRETRAINED_DIR,
           description="", config=None, data_dir=None, params_path=None):
  """Checks and writes ``out_dir/name.msgpack``; returns (path, controller)."""
  if not name or not all(c.isalnum() or c in "_-" for c in name):
    raise ValueError(f"--name={name!r}; allowed: letters, digits, '_', '-'.")
  artifact = os.path.join(workdir, experiment.ARTIFACT_NAME)
  if params_path is None and os.path.exists(artifact):
    controller = controller_lib.load_controller(artifact)
  else:
    params_path = params_path or os.path.join(workdir,
                                              "controller_params.msgpack")
    controller = from_params_file(_read_config(workdir, config), params_path,
                                  name, data_dir)
  spec = dataclasses.replace(controller.spec, name=name,
                             description=description or
                             controller.spec.description)
  controller = controller_lib.make_controller(spec, controller.params)
  path = controller_lib.save_controller(
      os.path.join(out_dir, f"{name}.msgpack"), controller)
  controller_lib.load_controller(path)   # round trip check
  return path, controller


def _define_flags():
  """Flags, defined only when run as a script (importing ``export`` from
  tests must not clash with train_controller's --config/--workdir)."""
  workdir = flags.DEFINE_string("workdir", None, "Training workdir.")
  name = flags.DEFINE_string("name", None, "Name of the exported controller.")
  description = flags.DEFINE_string("description", "", "Free text stored "
                                     "with it (task, budget, results).")
  out_dir = flags.DEFINE_string("out_dir", controller_lib.PRETRAINED_DIR,
                                 "Where NAME.msgpack goes.")
  data_dir = flags.DEFINE_string("data_dir", None, "Data directory (when "
                                  "rebuilding from a params file).")
  params = flags.DEFINE_string(
      "params", None, "Agent params file (flax msgpack) to export instead of "
      "WORKDIR/controller.msgpack, e.g. a snapshot.")
  config = config_flags.DEFINE_config_file(
      "config", None, "Training config; default WORKDIR/config.json.")
  return (workdir, name, description, out_dir, data_dir, params,
          config)


def main(argv, defined):
  del argv
  workdir, name, description, out_dir, data_dir, params, config = (
      f.value for f in defined)
  if not workdir or not name:
    raise app.UsageError("--workdir and --name are required.")
  path, controller = export(workdir, name, out_dir, description, config,
                            data_dir, params)
  spec = dataclasses.asdict(controller.spec)
  spec.pop("config")
  print(json.dumps(spec, indent=1, default=str))
  print(f"Wrote {path} ({os.path.getsize(path)} bytes).")


if __name__ == "__main__":
  _defined = _define_flags()
  app.run(lambda argv: main(argv, _defined))
