"""Benchmark v2 statistics on hand-made numbers with known answers."""

import itertools

import numpy as np
import pytest
import scipy.stats

from lr_meta.benchmark import scoring

INF = float("inf")


def test_holm_adjusts_by_hand():
  # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06,
  # 0.04, made non-decreasing: 0.02, 0.03, 0.06, 0.06.
  np.testing.assert_allclose(scoring.holm([0.01, 0.04, 0.03, 0.005]),
                             [0.03, 0.06, 0.06, 0.02])
  # NaN stays NaN and is not counted: m = 2.
  out = scoring.holm([0.02, float("nan"), 0.6])
  np.testing.assert_allclose(out[[0, 2]], [0.04, 0.6])
  assert np.isnan(out[1])
  assert scoring.holm([0.9, 0.8]).tolist() == [1.0, 1.0]


def test_holm_controls_the_family_wise_error_on_null_p_values():
  rng = np.random.default_rng(0)
  rejected = [np.any(scoring.holm(rng.uniform(size=20)) < 0.05)
              for _ in range(4000)]
  assert np.mean(rejected) <= 0.05 + 0.01


def test_interquartile_mean_by_hand():
  assert scoring.interquartile_mean([1, 2, 3, 4]) == 2.5
  # 8 values: drop 2 each side.
  assert scoring.interquartile_mean([9, 1, 2, 3, 4, 5, 6, -7]) == 3.5
  # n = 10: weights 0.5, 1, 1, 1, 1, 0.5 on the sorted 3rd..8th values.
  x = np.arange(10.0)
  expected = (0.5 * 2 + 3 + 4 + 5 + 6 + 0.5 * 7) / 5.0
  assert scoring.interquartile_mean(x) == pytest.approx(expected)
  assert scoring.interquartile_mean(x) == pytest.approx(
      scipy.stats.trim_mean(np.arange(12.0), 0.25) - 1.0)
  # A diverged seed (+inf) in the top quarter is trimmed; in the middle not.
  assert scoring.interquartile_mean([1, 1, 1, INF]) == 1.0
  assert scoring.interquartile_mean([1, 1, INF, INF]) == INF


def test_median_with_divergences():
  assert scoring.median([3, 1, 2]) == 2
  assert scoring.median([1, 2, INF, INF]) == INF
  assert scoring.median([1, 2, 3, INF]) == 2.5
  assert scoring.median([1, INF, INF]) == INF


def test_seed_normalized_marks_divergence_apart():
  out = scoring.seed_normalized([2.0, 1.0, float("nan"), 3.0],
                                [False, False, False, True], 2.0)
  assert out.tolist() == [1.0, 0.5, INF, INF]
  with pytest.raises(ValueError, match="reference_mean=0"):
    scoring.seed_normalized([1.0], [False], 0)


def _exact_bootstrap_quantiles(groups, statistic, level=0.95):
  """Every equally likely two-level resample, enumerated."""
  k = len(groups)
  values, weights = [], []
  for chosen in itertools.product(range(k), repeat=k):
    inner = [list(itertools.product(groups[g], repeat=len(groups[g])))
             for g in chosen]
    for draw in itertools.product(*inner):
      values.append(statistic(np.concatenate([np.asarray(d) for d in draw])))
  values = np.sort(values)
  tail = (1 - level) / 2
  return (np.quantile(values, tail, method="lower"),
          np.quantile(values, 1 - tail, method="higher"))


@pytest.mark.parametrize("groups", [
    [[1.0, 3.0]],                          # one workload, two seeds
    [[1.0, 1.0], [3.0, 3.0]],              # two workloads, constant seeds
    [[1.0, 2.0], [4.0, 8.0]],
])
def test_bootstrap_interval_matches_exact_enumeration(groups):
  got = scoring.bootstrap_interval(groups, scoring.median,
                                   num_resamples=4000)
  assert got == _exact_bootstrap_quantiles(groups, scoring.median)


def test_bootstrap_interval_of_a_mean_is_the_normal_interval():
  # One group of n normal values: the interval of the mean is about
  # mean +- 1.96 sd / sqrt(n).
  x = np.random.default_rng(1).normal(size=400)
  low, high = scoring.bootstrap_interval([x], np.mean, num_resamples=3000)
  half = 1.96 * x.std() / np.sqrt(x.size)
  assert low == pytest.approx(x.mean() - half, abs=0.015)
  assert high == pytest.approx(x.mean() + half, abs=0.015)
  # Constant values: a point.
  assert scoring.bootstrap_interval([[2.0] * 5, [2.0] * 3],
                                    scoring.interquartile_mean) == (2.0, 2.0)


def test_bootstrap_is_a_function_of_its_seed():
  g = [[1.0, 2.0, 3.0], [2.0, 5.0]]
  a = scoring.bootstrap_interval(g, scoring.median, seed=3)
  assert a == scoring.bootstrap_interval(g, scoring.median, seed=3)


def test_rank_p_ranks_divergences_worst():
  a = [1.0, 1.1, 1.2, 1.3, 1.4]
  b = [2.0, 2.1, INF, 2.3, 2.4]
  # Complete separation of 5 and 5: exact two-sided p = 2 / C(10, 5).
  assert scoring.rank_p(a, b) == pytest.approx(2 / 252)
  assert scoring.rank_p(b, a) == pytest.approx(2 / 252)
  # Tied divergences: scipy's normal approximation with tie correction.
  tied = [2.0, 2.1, INF, INF, INF]
  assert scoring.rank_p(a, tied) == pytest.approx(scipy.stats.mannwhitneyu(
      a, [2.0, 2.1, 9.0, 9.0, 9.0]).pvalue)
  assert np.isnan(scoring.rank_p([1.0, 1.0], [1.0, 1.0]))
  assert np.isnan(scoring.rank_p([1.0], [2.0, 3.0]))


def test_corrected_outcome_uses_the_adjusted_p():
  a, b = [1.0, 1.1, 1.2], [2.0, 2.1, INF]
  assert scoring.corrected_outcome(a, b, 0.01) == scoring.WIN
  assert scoring.corrected_outcome(b, a, 0.01) == scoring.LOSS
  assert scoring.corrected_outcome(a, b, 0.2) == scoring.TIE
  assert scoring.corrected_outcome(a, b, float("nan")) == scoring.TIE


def test_steps_to_target_on_a_hand_made_curve():
  steps = [10, 20, 30, 40]
  assert scoring.steps_to_target(steps, [2.0, 1.5, 1.2, 1.1], 1.2) == 30
  assert scoring.steps_to_target(steps, [2.0, 1.0, 1.3, 1.1], 1.2) == 20
  assert scoring.steps_to_target(steps, [2.0, 1.5, 1.4, 1.3], 1.2) == INF
  assert scoring.steps_to_target(steps, [2.0, np.nan, np.nan, np.nan],
                                 1.2) == INF


def test_step_ratios_and_profile_area():
  r = scoring.step_ratios({"a": 100.0, "b": 250.0, "c": INF})
  assert r == {"a": 1.0, "b": 2.5, "c": INF}
  assert all(np.isinf(v) for v in scoring.step_ratios(
      {"a": INF, "b": INF}).values())
  # Ratio 2.5 covers tau in [2.5, 4] of [1, 4]: half the area.
  assert scoring.profile_area([2.5]) == pytest.approx(0.5)
  assert scoring.profile_area([1.0, INF]) == pytest.approx(0.5)
  assert scoring.profile_area([1.0, 1.0]) == 1.0
  assert scoring.profile_area([5.0]) == 0.0
  # The closed form equals the integral of the profile.
  ratios = [1.0, 1.3, 2.0, 3.7, INF]
  taus = np.linspace(1, 4, 30001)
  frac = np.mean(np.asarray(ratios)[None] <= taus[:, None], axis=1)
  assert scoring.profile_area(ratios) == pytest.approx(
      np.trapezoid(frac, taus) / 3, abs=1e-4)


def test_seeds_disagree():
  assert not scoring.seeds_disagree([1.00, 1.05, 1.09])
  assert scoring.seeds_disagree([1.00, 1.05, 1.12])
  assert scoring.seeds_disagree([1.0, float("nan")])


def test_median_curve_ranks_divergence_worst():
  curves = [[2.0, 1.0, 0.5], [3.0, INF, INF], [2.5, 1.5, 1.0]]
  np.testing.assert_array_equal(scoring.median_curve(curves),
                                [2.5, 1.5, 1.0])
  # Reached at the median's step, not the best seed's.
  assert scoring.steps_to_target([1, 2, 3], scoring.median_curve(curves),
                                 1.2) == 3


def test_single_configuration_by_hand():
  # Two workloads, three configurations. Ratios to each workload's best:
  # w0: [1.0, 1.1, 1.5]; w1: [1.2, 1.0, 1.05]; means 1.1, 1.05, 1.275.
  val = [[2.0, 2.2, 3.0], [0.6, 0.5, 0.525]]
  best, ratio = scoring.single_configuration(val)
  assert best == 1
  np.testing.assert_allclose(ratio, [1.1, 1.05, 1.275])
  # A configuration that diverged on one workload is never chosen, even
  # though it is best by far on the other.
  best, ratio = scoring.single_configuration([[1.0, 2.0], [np.nan, 1.0]])
  assert best == 1 and ratio[0] == np.inf
  with pytest.raises(ValueError, match="finite, positive"):
    scoring.single_configuration([[np.inf, np.nan]])
