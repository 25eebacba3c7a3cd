"""lr_meta.progress: plain lines in logs, a bar on terminals, the ETA."""

import io

import pytest

from lr_meta import progress as progress_lib


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_log_gets_plain_lines_without_carriage_returns():
  out = io.StringIO()
  p = progress_lib.Progress(4, "iterations", stream=out, interval=3600.0)
  for i in range(4):
    p.update(1, f"return {i}", seconds=2.0)
  p.close("done")
  lines = out.getvalue().splitlines()
  assert "\r" not in out.getvalue()
  # The first update and the last unit print (the interval is an hour).
  assert lines[0].startswith("[iterations] 1/4 (25%), elapsed 0m00s, ETA "
                             "0m06s, return 0")
  assert lines[1].startswith("[iterations] 4/4 (100%)")
  assert lines[1].endswith("ETA 0m00s, return 3") and lines[2] == (
      "[iterations] done")
  assert len(lines) == 3


def test_terminal_gets_a_bar():
  out = _Terminal()
  p = progress_lib.Progress(3, "iterations", stream=out)
  p.update(1)
  p.close()
  assert "\r" in out.getvalue() and "iterations" in out.getvalue()


def test_eta_weighs_work_and_ignores_cached_units():
  p = progress_lib.Progress(3, "runs", total_work=600, initial=0,
                            stream=io.StringIO())
  p.update(1, work=100, cached=True)             # free: not in the rate
  assert p.eta() != p.eta()                      # NaN: nothing measured
  p.update(1, work=200, seconds=10.0)            # 20 steps/s
  assert p.eta() == pytest.approx(300 / 20.0)
  # A resume: 5 of 10 iterations done before; the rate is of those here.
  r = progress_lib.Progress(10, "iterations", initial=5, stream=io.StringIO())
  r.update(1, seconds=4.0)
  assert r.done == 6 and r.eta() == pytest.approx(16.0)


def test_duration():
  assert [progress_lib.duration(s) for s in (0, 61.4, 3723, float("nan"))] \
      == ["0m00s", "1m01s", "1h02m03s", "?"]


def test_warmup_updates_are_left_out_of_the_rate():
  """A jitted loop's first iteration includes compilation."""
  out = io.StringIO()
  p = progress_lib.Progress(5, "iterations", stream=out, interval=0.0,
                            warmup=1)
  p.update(1, seconds=120.0)                     # compile + first step
  assert p.eta() != p.eta()                      # NaN: no rate yet
  p.update(1, seconds=3.0)
  assert p.eta() == pytest.approx(3 * 3.0)       # 3 left at 3 s each
  lines = out.getvalue().splitlines()
  assert lines[0].endswith("ETA ?") and lines[1].endswith("ETA 0m09s")



def test_extend_grows_the_total_and_its_work():
  stream = io.StringIO()
  p = progress_lib.Progress(2, "bench", total_work=20, stream=stream,
                            interval=0.0)
  p.update(2, work=20, seconds=1.0)
  p.extend(2, 30)
  assert (p.total, p.total_work) == (4, 50.0)
  assert p.eta() == pytest.approx(1.5)   # 30 work left at 20 per second
  p.update(2, work=30, seconds=1.0)
  assert "4/4 (100%)" in stream.getvalue().splitlines()[-1]
