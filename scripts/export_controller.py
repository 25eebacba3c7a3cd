"""Export a trained controller into the package (lr_meta/pretrained/NAME.msgpack).

  python scripts/export_controller.py --workdir runs/quickstart --name NAME \
      [--description "..."] [--out_dir lr_meta/pretrained]

Reads ``WORKDIR/controller.msgpack`` (written at the end of
``scripts/train_controller.py``), renames it NAME, checks it (format, checksum,
params vs network) and writes ``OUT_DIR/NAME.msgpack``; prints its spec.

To export another snapshot of the same run (e.g. the best-validation one
picked by ``scripts/evaluate_controller.py``), or from a run that stopped
before writing ``controller.msgpack``, name the snapshot's iteration (default
without the file: the latest); the controller is then rebuilt
from that snapshot and the run's ``config.json`` (or ``--config`` with the
same overrides)::

  python scripts/export_controller.py --workdir runs/fmnist --name NAME \
      --iteration 150
"""

import dataclasses
import json
import os

from absl import app
from absl import flags
from absl import logging

from lr_meta import config as config_lib
from lr_meta import experiment
from lr_meta import rundir
from lr_meta.policies import controller as controller_lib


def from_snapshot(config, workdir, iteration, name, data_dir=None):
  """Rebuilds the controller from a snapshot of the run and its config."""
  _, env, env_params, _ = experiment.build(config, data_dir)
  return rundir.controller_from_training(
      config, env, env_params, rundir.load_snapshot(workdir, iteration),
      export=experiment.exporter(config), name=name)


def export(workdir, name, out_dir=controller_lib.PRETRAINED_DIR,
           description="", config=None, data_dir=None, iteration=None):
  """Checks and writes ``out_dir/name.msgpack``; returns (path, controller).

  ``iteration``: export that snapshot instead of ``controller.msgpack``;
  without the file the latest snapshot is exported.
  """
  if not name or not all(c.isalnum() or c in "_-" for c in name):
    raise ValueError(f"--name={name!r}; allowed: letters, digits, '_', '-'.")
  artifact = os.path.join(workdir, rundir.CONTROLLER_FILE)
  if iteration is None and os.path.exists(artifact):
    controller = controller_lib.load_controller(artifact)
  else:
    controller = from_snapshot(config or rundir.read_config(workdir),
                               workdir, iteration, name, data_dir)
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
                                  "rebuilding from a snapshot).")
  iteration = flags.DEFINE_integer(
      "iteration", None, "Snapshot iteration to export instead of "
      "WORKDIR/controller.msgpack.")
  config = config_lib.DEFINE_config_file(
      "config", None, "Training config; default WORKDIR/config.json.")
  return (workdir, name, description, out_dir, data_dir, iteration,
          config)


def main(argv, defined):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every read at INFO
  workdir, name, description, out_dir, data_dir, iteration, config = (
      f.value for f in defined)
  if not workdir or not name:
    raise app.UsageError("--workdir and --name are required.")
  path, controller = export(workdir, name, out_dir, description, config,
                            data_dir, iteration)
  spec = json.loads(controller.spec.to_json())   # the file's flat fields
  spec.pop("config")
  print(json.dumps(spec, indent=1, default=str))
  print(f"Wrote {path} ({os.path.getsize(path)} bytes).")


if __name__ == "__main__":
  _defined = _define_flags()
  app.run(lambda argv: main(argv, _defined),
          flags_parser=config_lib.parse_flags)
