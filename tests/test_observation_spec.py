"""One observation spec for the environment's params and the controller's spec."""

import hashlib
import json

import pytest

from lr_meta import tasks
from lr_meta.benchmark import harness
from lr_meta.envs import lr_env
from lr_meta.features import observation_spec as observation_spec_lib
from lr_meta.features import xu_protocol
from lr_meta.policies import controller as controller_lib

ObservationSpec = observation_spec_lib.ObservationSpec

FLAT = dict(observation="scale_free", inputs=("grad_norm_ratio",),
            decision_schedule="fraction", steps_per_decision=5,
            num_decisions=12, ema_decay=0.7, log_lr_observation=False,
            slope_decay=0.6, num_val_examples=64)


def test_flat_names_round_trip():
  spec = ObservationSpec.from_flat(FLAT)
  assert spec.kind == "scale_free" and spec.log_lr is False
  assert spec.to_flat() == dict(FLAT, protocol=xu_protocol.XuProtocol())
  assert spec.replace_flat(observation="", log_lr_observation=True) == (
      ObservationSpec.from_flat(dict(FLAT, observation="",
                                     log_lr_observation=True)))
  # The per-example decay is left out of files at its default only.
  assert "per_example_decay" in spec.replace_flat(
      per_example_decay=0.5).to_flat()


def test_env_params_and_controller_spec_hold_the_same_spec():
  params = lr_env.LREnvParams.from_fields(reward="log_val_loss_change",
                                          **FLAT)
  spec = controller_lib.ControllerSpec.from_fields(
      name="t", action_type="xu2017", network="gaussian_mlp",
      hidden_sizes=(4,), **FLAT)
  assert params.observation_spec == spec.observation_spec
  assert (params.num_decisions, params.steps_per_decision) == (12, 5)
  params.check("xu2017")
  spec.check()
  # A controller file keeps the flat names.
  stored = json.loads(spec.to_json())
  assert {k: stored[k] for k in FLAT} == {
      k: list(v) if isinstance(v, tuple) else v for k, v in FLAT.items()}
  assert controller_lib.ControllerSpec.from_json(spec.to_json()) == spec


def test_unknown_flat_fields_are_named():
  with pytest.raises(ValueError, match=r"env has unknown fields \['ema'\]"):
    lr_env.LREnvParams.from_fields(ema=0.5)
  with pytest.raises(ValueError, match=r"spec has unknown fields \['ema'\]"):
    controller_lib.ControllerSpec.from_fields(name="t", ema=0.5)


@pytest.mark.parametrize("flat, message", [
    (dict(ema_decay=1.0), r"^env.ema_decay=1.0; allowed: \[0, 1\)."),
    (dict(log_lr_observation=True, slope_decay=-0.1),
     r"^env.slope_decay=-0.1; allowed: \[0, 1\)."),
    (dict(num_val_examples=0), r"^env.num_val_examples=0; allowed: None or"),
    (dict(steps_per_decision=0), r"^env.steps_per_decision=0; allowed:"),
    (dict(decision_schedule="often"), r"^env.decision_schedule='often';"),
    (dict(observation="weight_stats"),
     r"^env.observation='weight_stats' with action_type 'xu2019'"),
])
def test_checks_name_the_flat_field(flat, message):
  with pytest.raises(ValueError, match=message):
    lr_env.LREnvParams.from_fields(**flat).check("xu2019")


def test_the_environment_fills_its_kind_and_refuses_another():
  task = tasks.make_task("mnist1d", "mlp", {"hidden_sizes": (8,)}, "sgd",
                         batch_size=16, num_train_examples=64,
                         num_val_examples=32, num_test_examples=32)
  env = lr_env.LREnv(task, "xu2017", "scale_free", ("grad_norm_ratio",))
  params = lr_env.LREnvParams.from_fields(num_decisions=4)
  spec = env.observation_spec(params)
  assert (spec.kind, spec.inputs) == ("scale_free", ("grad_norm_ratio",))
  with pytest.raises(ValueError, match="env.observation='dynamics'"):
    env.observation_spec(params.with_fields(observation="dynamics"))


# The benchmark's cache keys of the shipped controllers (digests of
# ``harness.fingerprint(spec)``) and of their specs' JSON, recorded before the
# observation settings were grouped into one spec: grouping them must not
# change what the cached runs are found under, nor what a file holds.
_SHIPPED = {
    "cifar10_lenet_xu2019_cpu": ("a9e3f6adaa0aa371", "c3ac91999f9cf492"),
    "fmnist_lenet_xu2019_cpu": ("7d45a9be5b249d52", "0f0dff8ed3a4cfef"),
    "fmnist_mlp_xu2019_progress_cpu": ("6d1c564ab912fa98",
                                       "37544c0052f187bd"),
    "mnist1d_mlp_quickstart": ("3775f12a71563b42", "d4d2ff8b646b2a8c"),
}


@pytest.mark.parametrize("name", sorted(_SHIPPED))
def test_shipped_controllers_keep_their_cache_keys_and_file_text(name):
  spec = controller_lib.pretrained_controller(name).spec
  digest = lambda text: hashlib.sha256(text.encode()).hexdigest()[:16]
  key = digest(json.dumps(harness.fingerprint(spec), sort_keys=True))
  assert (key, digest(spec.to_json())) == _SHIPPED[name]
