"""lr_meta.benchmark.transfer: Xu 2019 Table 2's protocol on the tiny suite."""

import numpy as np
import pytest

from lr_meta import baselines
from lr_meta.benchmark import methods as methods_lib
from lr_meta.benchmark import scoring
from lr_meta.benchmark import transfer
from lr_meta.benchmark import workloads as workloads_lib

SOURCE, TARGET = "tiny_mnist1d_mlp_sgd", "tiny_mnist1d_mlp_adam"
CONTROLLER = methods_lib.CONTROLLER_PREFIX + "generalist"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  return transfer.run_transfer(
      "tiny", SOURCE, [TARGET], [CONTROLLER], ("cosine",), num_seeds=2,
      outdir=str(tmp_path_factory.mktemp("transfer")),
      progress_interval=1e9)


def _cells(results, method):
  return [c for c in results["cells"]
          if c["workload"] == TARGET and c["method"] == method]


def test_the_source_winner_runs_unchanged_on_the_target(results):
  winner = results["transfer"]["winners"]["cosine"]
  # The winner is the source's tuned cosine: the lowest mean final
  # validation loss of its grid on the source's tuning seeds.
  assert winner.startswith("cosine(lr=")
  carried = _cells(results, transfer.transferred_name(winner))
  assert len(carried) == 2
  target = workloads_lib.get_workload(TARGET)
  lrs = baselines.parse_spec(winner).sequence(target.num_steps)
  every = target.eval_every
  # The schedule is re-expressed for the target's horizon (2x the source's).
  np.testing.assert_allclose(carried[0]["learning_rate"],
                             lrs[every - 1::every], rtol=1e-6)
  # Untuned on the target: one setting, the same on every seed.
  assert {c["setting"] for c in carried} == {winner}


def test_table_compares_every_method_with_the_controller(results):
  table = transfer.transfer_table(results)
  winner = results["transfer"]["winners"]["cosine"]
  rows = [l for l in table.splitlines() if l.startswith("| ")][1:]
  assert rows[0].startswith(f"| {CONTROLLER} |")
  assert rows[1].startswith(f"| cosine tuned on {SOURCE}: {winner} |")
  tuned_here = _cells(results, "cosine")[0]["setting"]
  assert any(r.startswith(f"| cosine tuned on {TARGET}: {tuned_here} |")
             for r in rows)
  ctrl = [c["test_loss"] for c in _cells(results, CONTROLLER)]
  carried = [c["test_loss"] for c in
             _cells(results, transfer.transferred_name(winner))]
  assert rows[1].endswith(f"| {scoring.welch_p(carried, ctrl):.2g} |")


def test_bad_names_are_refused_before_any_run(tmp_path):
  with pytest.raises(ValueError, match="controller 'generalist'; allowed: "
                     "'controller:<name or path>'"):
    transfer.run_transfer("tiny", SOURCE, [TARGET], ["generalist"],
                          outdir=str(tmp_path))
  with pytest.raises(ValueError, match="not in suite 'tiny'"):
    transfer.run_transfer("tiny", SOURCE, ["fmnist_mlp_sgd"], [CONTROLLER],
                          outdir=str(tmp_path))
  with pytest.raises(ValueError, match=r"references \['default_lr'\] are not "
                     "tuned methods; allowed: "):
    transfer.source_winners(SOURCE, ["default_lr"], num_seeds=2,
                            outdir=str(tmp_path))
  with pytest.raises(ValueError, match="Unknown method 'schedule:nope"):
    methods_lib.get_method("schedule:nope(lr=1)")
