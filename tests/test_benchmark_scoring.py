"""Scoring math of lr_meta.benchmark on hand-made numbers."""

import math

import numpy as np
import pytest
import scipy.stats

from lr_meta.benchmark import scoring


def test_divergence_is_counted_apart_and_ranks_worst():
  s = scoring.apply_divergence([0.5, 0.7, 0.6, float("nan")],
                               [0.8, 0.7, 0.9, 0.5],
                               [False, True, False, False], worst_loss=1000.0)
  np.testing.assert_array_equal(s.diverged, [False, True, False, True])
  ws = scoring.score_workload({"cosine": s, "best_constant": s}, "cosine",
                              "best_constant")["cosine"]
  # Means over the seeds that did not diverge; the cap enters no mean.
  assert ws.loss_mean == pytest.approx(0.55)
  assert ws.accuracy_mean == pytest.approx(0.85)
  assert ws.diverged == 2 and ws.num_seeds == 4
  assert ws.normalized_seeds == (0.5 / 0.55, math.inf, 0.6 / 0.55, math.inf)
  assert ws.normalized == math.inf         # half the seeds diverged
  # A finite loss above the cap is capped there (not a divergence).
  capped = scoring.apply_divergence([2e3], [0.1], [False], worst_loss=1e3)
  assert capped.test_loss[0] == 1e3 and not capped.diverged[0]


def test_welch_p_matches_scipy_and_degenerate_cases():
  a, b = [1.0, 1.2, 0.9, 1.1], [1.5, 1.7, 1.6, 1.4, 1.8]
  assert scoring.welch_p(a, b) == pytest.approx(
      scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)
  # Welch by hand: t = (mean_a - mean_b) / sqrt(va/na + vb/nb).
  va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
  t = (np.mean(a) - np.mean(b)) / np.sqrt(va / 4 + vb / 5)
  dof = (va / 4 + vb / 5) ** 2 / ((va / 4) ** 2 / 3 + (vb / 5) ** 2 / 4)
  assert scoring.welch_p(a, b) == pytest.approx(
      2 * scipy.stats.t.sf(abs(t), dof))
  assert math.isnan(scoring.welch_p([1.0, 1.0], [2.0, 2.0]))
  assert math.isnan(scoring.welch_p([1.0], [2.0, 3.0]))


def test_score_workload_against_the_references():
  cos = scoring.apply_divergence([1.0, 1.2], [0.6, 0.5], [False, False], 1e3)
  const = scoring.apply_divergence([1.4, 1.6], [0.5, 0.4], [False, False], 1e3)
  other = scoring.apply_divergence([0.55, 0.45], [0.7, 0.8], [False, False],
                                   1e3)
  s = scoring.score_workload({"cosine": cos, "best_constant": const,
                              "x": other}, "cosine", "best_constant")
  assert s["x"].normalized == pytest.approx(0.5 / 1.1)
  assert s["cosine"].normalized == pytest.approx(1.0)
  assert s["x"].p_reference == pytest.approx(
      scipy.stats.mannwhitneyu([0.55, 0.45], [1.0, 1.2]).pvalue)
  assert s["x"].p_baseline == pytest.approx(
      scipy.stats.mannwhitneyu([0.55, 0.45], [1.4, 1.6]).pvalue)
  assert s["x"].accuracy_mean == pytest.approx(0.75)
  # 2 seeds against 2 cannot reach p < 0.05: a tie, uncorrected too.
  assert s["x"].outcome == scoring.TIE
  with pytest.raises(ValueError, match="reference 'cosine' is missing"):
    scoring.score_workload({"x": other}, "cosine", "best_constant")
  gone = scoring.apply_divergence([1.0, 1.0], [0.1, 0.1], [True, True], 1e3)
  with pytest.raises(ValueError, match="diverged on every seed"):
    scoring.score_workload({"cosine": gone, "best_constant": const},
                           "cosine", "best_constant")


def test_summary_over_workloads():
  groups = [[0.5, 0.6, 0.7], [1.0, 1.1, math.inf], [2.0, 2.0, 2.0]]
  s = scoring.summarize(groups, [scoring.WIN, scoring.TIE, scoring.LOSS],
                        [scoring.WIN, scoring.WIN, scoring.TIE],
                        num_resamples=500)
  pooled = [0.5, 0.6, 0.7, 1.0, 1.1, math.inf, 2.0, 2.0, 2.0]
  assert s.median == 1.1
  assert s.iqm == pytest.approx(scoring.interquartile_mean(pooled))
  assert s.median_low <= s.median <= s.median_high
  assert (s.wins, s.ties, s.losses) == (1, 1, 1)
  assert (s.baseline_wins, s.baseline_ties, s.baseline_losses) == (2, 1, 0)
  assert (s.diverged, s.num_seeds, s.num_workloads) == (1, 9, 3)


def test_performance_profile():
  frac = scoring.performance_profile([0.9, 1.0, 1.5, 3.0], [0.5, 1.0, 2.0,
                                                            3.0])
  np.testing.assert_allclose(frac, [0.0, 0.5, 0.75, 1.0])


def test_best_setting_is_the_lowest_mean_and_skips_diverged_settings():
  val = [[0.5, 0.7],            # mean 0.6
         [0.4, np.inf],         # a diverged seed: never chosen
         [0.55, 0.6],           # mean 0.575: the winner
         [0.2, np.nan]]         # NaN (unreadable) counts as diverged
  assert scoring.best_setting(val) == 2
  assert scoring.best_setting([[1.0], [1.0]]) == 0     # first of equals
  with pytest.raises(ValueError, match=r"shape \(3,\)"):
    scoring.best_setting([0.1, 0.2, 0.3])
