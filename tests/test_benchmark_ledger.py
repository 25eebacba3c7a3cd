"""The held-out ledger's rule: only non-final methods on held-out cells."""

from lr_meta.benchmark import ledger


def test_only_controller_files_are_not_final():
  assert ledger.is_final("cosine") and ledger.is_final("prodigy")
  assert ledger.is_final("controller:generalist")
  assert ledger.is_final("schedule:cosine(lr=0.3)")
  assert not ledger.is_final("controller:runs/gen/candidate.msgpack")


def test_record_look_writes_one_row_only_for_a_look(tmp_path):
  path = tmp_path / "docs" / "ledger.md"
  assert not ledger.record_look(str(path), command="c", methods=["cosine",
                                "controller:generalist"],
                                heldout_workloads=["w"])
  assert not path.exists()
  assert not ledger.record_look(str(path), command="c",
                                methods=["controller:x.msgpack"],
                                heldout_workloads=[])
  assert ledger.record_look(str(path), command="a | b",
                            methods=["cosine", "controller:x.msgpack"],
                            heldout_workloads=["w1", "w2"], note="",
                            date="2026-12-06")
  assert ledger.record_look(str(path), command="c",
                            methods=["controller:y.msgpack"],
                            heldout_workloads=["w1"], note="kept attempt 2",
                            date="2026-12-07")
  lines = path.read_text().splitlines()
  assert lines[0] == "# Held-out ledger"
  rows = [l for l in lines if l.startswith("| 2026")]
  assert rows == [
      "| 2026-12-06 | `a \\| b` | controller:x.msgpack (not final) | "
      "held-out scores of w1, w2 | not stated |",
      "| 2026-12-07 | `c` | controller:y.msgpack (not final) | held-out "
      "scores of w1 | kept attempt 2 |"]
