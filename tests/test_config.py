"""Config files by path (lr_meta.config): sibling configs without PYTHONPATH,
one-line errors for a missing file and for unknown field names."""

import os
import pathlib
import subprocess
import sys

import pytest

from lr_meta import config as config_lib
from lr_meta import experiment
from lr_meta.envs import lr_env

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args, cwd, pythonpath):
  env = dict(os.environ, PYTHONPATH=str(pythonpath))
  return subprocess.run([sys.executable] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300,
                        check=False)


@pytest.fixture
def lib_only(tmp_path):
  """A PYTHONPATH holding this checkout's lr_meta and nothing else."""
  path = tmp_path / "lib"
  path.mkdir()
  (path / "lr_meta").symlink_to(REPO / "lr_meta")
  return path


def test_configs_load_siblings_without_configs_on_the_path(tmp_path,
                                                           lib_only):
  # fu2016_dqn_wrn -> fu2016_dqn -> xu2019_ppo: two levels of siblings,
  # loaded from a directory where ``import configs`` finds nothing.
  code = ("import importlib.util\n"
          "from lr_meta import config\n"
          "assert importlib.util.find_spec('configs') is None\n"
          "c = config.load_config("
          f"{str(REPO / 'configs' / 'fu2016_dqn_wrn.py')!r})\n"
          "print(c.agent, c.task.model, c.ppo.gamma)\n")
  proc = _run(["-c", code], tmp_path, lib_only)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == ["dqn", "wide_resnet", "0.9"]


def test_loaded_config_equals_the_package_import():
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  loaded = config_lib.load_config(REPO / "configs" / "quickstart.py")
  assert loaded.to_dict() == quickstart.get_config().to_dict()
  # One module object per file, whoever loads it.
  assert config_lib.sibling(REPO / "configs" / "quickstart.py",
                            "xu2019_ppo") is config_lib.load_module(
                                REPO / "configs" / "xu2019_ppo.py")


def test_missing_config_file_is_one_line(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"^Config file '.*nope.py' "
                     r"not found\.$"):
    config_lib.load_config(tmp_path / "nope.py")
  (tmp_path / "empty.py").write_text("X = 1\n")
  with pytest.raises(ValueError, match="defines no get_config"):
    config_lib.load_config(tmp_path / "empty.py")


def test_cli_missing_config_and_unknown_override_are_one_line(lib_only):
  script = str(REPO / "scripts" / "run_baselines.py")
  missing = _run([script, "--config", "configs/nope.py"], REPO, lib_only)
  assert missing.returncode == 1
  assert "Traceback" not in missing.stderr
  assert missing.stderr.splitlines() == [
      "FATAL Flags parsing error: --config: config file 'configs/nope.py' "
      "not found.", "Pass --helpshort or --helpfull to see help on flags."]
  typo = _run([script, "--config", "configs/baselines_tiny.py",
               "--config.num_step=3", "--config.task.batch_sise=8"], REPO,
              lib_only)
  assert typo.returncode == 1
  assert "Traceback" not in typo.stderr
  lines = typo.stderr.splitlines()
  assert lines[0].startswith(
      "FATAL Flags parsing error: --config.num_step: config has no field "
      "'num_step'; valid: baselines, batch_mode, cosine_init_lrs, eval_every,"
      " num_eval_seeds, num_steps,")
  assert lines[1].startswith(
      "FATAL Flags parsing error: --config.task.batch_sise: config.task has "
      "no field 'batch_sise'; valid: batch_size, dataset,")


def test_field_error_names_the_level():
  config = config_lib.load_config(REPO / "configs" / "quickstart.py")
  assert config_lib.field_error(config, "ppo.num_envs") is None
  assert config_lib.field_error(config, "seed.x") == (
      "config.seed has no field 'x'; valid: none (not a sub-config).")


@pytest.mark.parametrize("part,field", [
    ("", "num_iteration"), ("ppo", "num_envz"), ("env", "unroll"),
    ("task", "data_dir"), ("eval", "seeds")])
def test_unknown_config_fields_are_named_with_the_valid_ones(part, field):
  config = config_lib.load_config(REPO / "configs" / "quickstart.py")
  node = config[part] if part else config
  node[field] = 1
  where = "config" + (f".{part}" if part else "")
  valid = sorted(experiment.config_fields()[part])
  with pytest.raises(ValueError) as e:
    experiment.check_config(config)
  assert str(e.value) == (f"{where} has unknown fields [{field!r}]; valid: "
                          f"{', '.join(valid)}.")
  assert field not in valid


def _controller_configs():
  """Every scripts/train_controller.py config shipped in configs/."""
  out = []
  for path in sorted((REPO / "configs").glob("[!_]*.py")):
    config = config_lib.load_config(path)
    if "agent" in config and "task" in config:
      out.append(pytest.param(config, id=path.stem))
  return out


@pytest.mark.parametrize("path,value,message", [
    ("seed", -1, "config.seed=-1; allowed: an integer >= 0."),
    ("eval.constant_lrs", (-1.0,), "config.eval.constant_lrs=(-1.0,); "
     "allowed: a non-empty tuple of finite numbers > 0."),
    ("eval.initial_lrs", (0.1, float("nan")), "config.eval.initial_lrs="
     "(0.1, nan); allowed: a non-empty tuple of finite numbers > 0."),
    ("eval.initial_lrs", (), "config.eval.initial_lrs=(); allowed: a "
     "non-empty tuple of finite numbers > 0."),
    ("eval.baselines", ("cosin",), "Unknown baseline grid 'cosin'"),
])
def test_values_are_checked_before_training(path, value, message):
  # Evaluation settings are used only after training: a bad one must fail
  # at the start, not after hours.
  config = config_lib.load_config(REPO / "configs" / "quickstart.py")
  *parents, leaf = path.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value
  with pytest.raises(ValueError) as e:
    experiment.check_config(config)
  assert str(e.value).startswith(message)


@pytest.mark.parametrize("field", ["divergence_penalty", "reward_baseline"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_rewards_are_refused(field, value):
  params = lr_env.LREnvParams.from_fields(**{field: value})
  with pytest.raises(ValueError, match=rf"^env.{field}={value!r}; allowed: "
                     r"a finite number.$"):
    params.check("xu2019")


@pytest.mark.parametrize("config", _controller_configs())
def test_every_shipped_controller_config_passes_the_checks(config):
  """A shipped config must build: inherited fields (e.g. an observation its
  action type cannot use) are caught here, not after a data load."""
  experiment.check_config(config)


def test_observation_of_another_action_type_is_refused():
  config = config_lib.load_config(REPO / "configs" / "fu2016_dqn.py")
  config.env.observation = "dynamics"
  with pytest.raises(ValueError, match=r"config.env.observation='dynamics' "
                     r"with config.env.action_type='fu2016'; allowed: "
                     r"\('weight_stats',\)"):
    experiment.check_config(config)
