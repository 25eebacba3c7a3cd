"""lr_meta.plotting: log axes labelled with plain numbers."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

from lr_meta import plotting  # pylint: disable=g-import-not-at-top


def _labels(ax, axis):
  ax.figure.canvas.draw()
  target = ax.yaxis if axis == "y" else ax.xaxis
  lo, hi = sorted(target.get_view_interval())
  out = []
  for tick in target.get_major_ticks() + target.get_minor_ticks():
    text = tick.label1.get_text()
    if text and lo <= tick.get_loc() <= hi:
      out.append((tick.get_loc(), text))
  return sorted(out)


@pytest.mark.parametrize("axis,limits,want", [
    # Less than a decade: matplotlib's defaults write 2x10^0, 3x10^0.
    ("y", (1.5, 4.0), {"2", "3", "4"}),
    ("y", (1e-4, 0.3), {"0.0001", "0.001", "0.01", "0.1"}),
    ("x", (0.02, 0.5), {"0.03", "0.1", "0.2", "0.3"}),
])
def test_log_ticks_are_plain_numbers(axis, limits, want):
  fig, ax = plt.subplots()
  ax.plot([1, 2], limits) if axis == "y" else ax.plot(limits, [1, 2])
  plotting.log_scale(ax, axis)
  (ax.set_ylim if axis == "y" else ax.set_xlim)(*limits)
  labels = _labels(ax, axis)
  texts = {text for _, text in labels}
  assert want <= texts, labels
  for loc, text in labels:
    assert "times" not in text and "$" not in text and "^" not in text
    assert float(text) == pytest.approx(loc, rel=1e-2)
  plt.close(fig)


def test_plain_number_and_bad_axis():
  assert [plotting.plain_number(x) for x in (0.03, 0.1, 2.0, 1e-5, 0.0)] == [
      "0.03", "0.1", "2", "1e-05", "0"]
  fig, ax = plt.subplots()
  with pytest.raises(ValueError, match="axis='z'; allowed"):
    plotting.log_scale(ax, "z")
  plt.close(fig)


def test_training_curves_show_every_point_of_every_run():
  """Nothing clipped: each panel's y range holds all finite points of all
  runs; x runs to the longest run; a run without a column is left out of
  that panel and non-numbers are gaps."""
  short = [{"iteration": str(i), "episode_return": str(v),
            "mean_action": "0.1"} for i, v in enumerate([1.6, -9.5, 1.7], 1)]
  long = [{"iteration": i, "episode_return": 1.0 + 0.01 * i}
          for i in range(1, 41)] + [{"iteration": 41, "episode_return": ""}]
  fig = plotting.training_curves_figure(
      [("short", short), ("long", long)], ("episode_return", "mean_action"),
      "fashion_mnist mlp, sgd, batch 128, 300 steps")
  returns, actions = fig.axes
  lo, hi = returns.get_ylim()
  assert lo < -9.5 and hi > 1.7
  assert returns.get_xlim() == (0, 41)
  assert [line.get_label() for line in returns.lines] == ["short", "long"]
  assert [line.get_label() for line in actions.lines] == ["short"]
  assert "300 steps" in returns.get_title()
  plt.close(fig)
  with pytest.raises(ValueError, match="columns=()"):
    plotting.training_curves_figure([("a", short)], (), "t")
