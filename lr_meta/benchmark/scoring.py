"""Scoring: per-workload statistics, normalisation, summaries, profiles.

Pure numpy on per-seed numbers, so every rule is testable on hand-made
values (benchmark v2):

* A diverged seed (flag or non-finite loss) is kept apart: loss and
  accuracy means are over the other seeds, the count is reported, and in
  every rank-based statistic it is the worst value (+inf), so no cap value
  (the old 1e3) enters a mean.
* Normalised test loss = a seed's test loss / the normaliser's mean test
  loss on the same workload (< 1: better). The benchmark's normaliser is
  the strongest tuned reference of each workload (chosen on validation).
* Tests: two-sided Mann-Whitney U (``rank_p``) against the normaliser and
  against the untuned base optimizer; over a side of the benchmark every
  (method, workload) test of one comparison is one family, Holm-corrected
  (``holm``) before it counts as a win or a loss.
* Per method over a side: median and interquartile mean of the pooled
  per-seed normalised losses, each with a two-level bootstrap 95% interval
  over workloads and seeds (``bootstrap_interval``).
* Time to target: the first evaluation step at which a method's median
  validation curve over seeds (``median_curve``) reaches the normaliser's
  median final validation loss (``steps_to_target``), its ratio
  to the fastest method (``step_ratios``) and the AlgoPerf-style
  performance profile's area up to a ratio of 4 (``profile_area``).
* Performance profile over normalised loss (Dolan & Moré 2002): the
  fraction of workloads whose normalised loss is <= tau.
"""

from typing import Callable, Dict, NamedTuple, Sequence, Tuple

import numpy as np
import scipy.stats

ALPHA = 0.05
WIN, TIE, LOSS = "win", "tie", "loss"


class SeedScores(NamedTuple):
  """Per-seed outcomes of one method on one workload, divergence applied."""
  test_loss: np.ndarray
  test_accuracy: np.ndarray
  diverged: np.ndarray


def apply_divergence(test_loss: Sequence[float],
                     test_accuracy: Sequence[float],
                     diverged: Sequence[bool],
                     worst_loss: float) -> SeedScores:
  """Scores with every diverged seed (or non-finite loss) set to the worst.

  Args:
    test_loss, test_accuracy, diverged: per-seed values, same length.
    worst_loss: the worst test loss (the workload's divergence cap).

  Returns:
    ``SeedScores``: diverged or non-finite seeds have loss ``worst_loss``
    and accuracy 0; other losses are capped at ``worst_loss``.
  """
  loss = np.asarray(test_loss, np.float64)
  acc = np.asarray(test_accuracy, np.float64)
  div = np.asarray(diverged, bool) | ~np.isfinite(loss)
  if not loss.shape == acc.shape == div.shape or loss.ndim != 1:
    raise ValueError(f"per-seed arrays must be 1-D and of one length; got "
                     f"{loss.shape}, {acc.shape}, {div.shape}.")
  if not worst_loss > 0:
    raise ValueError(f"worst_loss={worst_loss!r}; allowed: > 0.")
  loss = np.where(div, worst_loss, np.minimum(loss, worst_loss))
  return SeedScores(loss, np.where(div, 0.0, acc), div)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sided Welch t-test p-value; NaN when both samples are constant."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or len(b) < 2:
    return float("nan")
  if np.std(a) == 0 and np.std(b) == 0:
    return float("nan")
  return float(scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)


def best_setting(final_val_loss: Sequence[Sequence[float]]) -> int:
  """The tuned setting: the lowest mean final validation loss over seeds.

  Args:
    final_val_loss: ``(settings, tuning seeds)`` final validation losses; a
      non-finite one (a diverged seed) makes its setting's mean infinite.

  Returns:
    The index of the winning setting (the first of equal means).
  """
  val = np.asarray(final_val_loss, np.float64)
  if val.ndim != 2 or val.size == 0:
    raise ValueError(f"final_val_loss of shape {val.shape}; allowed: "
                     "(settings, seeds), both >= 1.")
  mean = np.where(np.all(np.isfinite(val), axis=1), val.mean(axis=1), np.inf)
  return int(np.argmin(mean))


def relative_to_best(val_loss: Sequence[Sequence[float]]) -> np.ndarray:
  """``(workloads, configurations)`` losses over each workload's best.

  A non-finite loss (a diverged seed) is +inf.

  Raises:
    ValueError: not a 2-D array, or a workload without a finite, positive
      loss.
  """
  val = np.asarray(val_loss, np.float64)
  if val.ndim != 2 or val.size == 0:
    raise ValueError(f"val_loss of shape {val.shape}; allowed: "
                     "(workloads, configurations), both >= 1.")
  finite = np.where(np.isfinite(val), val, np.inf)
  best = finite.min(axis=1, keepdims=True)
  if not np.all(np.isfinite(best)) or np.any(best <= 0):
    raise ValueError("every workload needs one configuration with a finite, "
                     "positive validation loss; got per-workload minima "
                     f"{best.ravel().tolist()}.")
  return finite / best


def single_configuration(val_loss: Sequence[Sequence[float]]
                         ) -> Tuple[int, np.ndarray]:
  """The one configuration to use unchanged on every workload.

  Kasimbeg et al. 2025's calibrated baseline, chosen on training workloads
  only: the configuration with the lowest mean, over workloads, of its
  validation loss relative to the best configuration on that workload.
  Ratios, not raw losses, so that no workload weighs more for having a
  larger loss; a non-finite loss (a diverged seed) makes the ratio +inf, so
  a configuration that diverges anywhere is never chosen while one exists
  that does not.

  Args:
    val_loss: ``(workloads, configurations)`` mean tuning validation losses.

  Returns:
    ``(index, mean ratio per configuration)``; the first of equal means.
  """
  ratio = relative_to_best(val_loss).mean(axis=0)
  return int(np.argmin(ratio)), ratio


class WorkloadScore(NamedTuple):
  """One method on one workload (benchmark v2).

  Loss and accuracy means are over the seeds that did not diverge;
  ``diverged`` counts the others, which rank worst everywhere else
  (``seed_normalized``: +inf).
  """
  loss_mean: float
  loss_std: float
  accuracy_mean: float
  accuracy_std: float
  diverged: int
  num_seeds: int
  normalized: float           # median of the per-seed normalised losses
  normalized_seeds: tuple     # per seed; +inf: diverged
  p_reference: float          # rank test against the normaliser
  p_baseline: float           # rank test against the baseline method
  outcome: str                # against the normaliser, uncorrected


def _finite_stats(values, keep):
  v = np.asarray(values, np.float64)[keep]
  if v.size == 0:
    return float("nan"), float("nan")
  return float(np.mean(v)), float(np.std(v))


def score_workload(scores: Dict[str, SeedScores], reference: str,
                   baseline: str) -> Dict[str, WorkloadScore]:
  """Scores of every method on one workload (``scores`` keyed by method).

  Args:
    scores: per-seed outcomes (``apply_divergence``) of every method.
    reference: the normaliser: normalised loss = test loss / its mean test
      loss over its non-diverged seeds; ``p_reference`` and ``outcome``
      compare with it (``rank_p``, divergences ranked worst).
    baseline: a second comparison (``p_baseline``), e.g. the untuned
      base optimizer.
  """
  for name in (reference, baseline):
    if name not in scores:
      raise ValueError(f"the reference {name!r} is missing; have "
                       f"{sorted(scores)}.")
  ref = scores[reference]
  ref_mean, _ = _finite_stats(ref.test_loss, ~ref.diverged)
  if not np.isfinite(ref_mean):
    raise ValueError(f"the reference {reference!r} diverged on every seed: "
                     "nothing to normalise by.")

  def ranked(s):
    return np.where(s.diverged, np.inf, s.test_loss)

  out = {}
  for name, s in scores.items():
    keep = ~s.diverged
    loss_mean, loss_std = _finite_stats(s.test_loss, keep)
    acc_mean, acc_std = _finite_stats(s.test_accuracy, keep)
    norm = seed_normalized(s.test_loss, s.diverged, ref_mean)
    p_ref = rank_p(ranked(s), ranked(ref))
    out[name] = WorkloadScore(
        loss_mean=loss_mean, loss_std=loss_std, accuracy_mean=acc_mean,
        accuracy_std=acc_std, diverged=int(np.sum(s.diverged)),
        num_seeds=len(s.test_loss), normalized=median(norm),
        normalized_seeds=tuple(float(v) for v in norm), p_reference=p_ref,
        p_baseline=rank_p(ranked(s), ranked(scores[baseline])),
        outcome=corrected_outcome(ranked(s), ranked(ref), p_ref))
  return out


class Summary(NamedTuple):
  """One method over a set of workloads (benchmark v2).

  ``median`` / ``iqm``: of the per-seed normalised losses pooled over the
  workloads, with two-level bootstrap 95% intervals (``*_low``,
  ``*_high``); wins / ties / losses against the normaliser and against the
  baseline at Holm-corrected p < 0.05 (the family: every method and
  workload of the side); ``diverged`` of ``num_seeds`` seeds.
  """
  median: float
  median_low: float
  median_high: float
  iqm: float
  iqm_low: float
  iqm_high: float
  wins: int
  ties: int
  losses: int
  baseline_wins: int
  baseline_ties: int
  baseline_losses: int
  diverged: int
  num_seeds: int
  num_workloads: int


def summarize(normalized_seeds: Sequence[Sequence[float]],
              outcomes: Sequence[str], baseline_outcomes: Sequence[str],
              num_resamples: int = 2000, seed: int = 0) -> Summary:
  """The summary of one method from its per-workload per-seed normalised
  losses and its corrected outcomes (``holm`` + ``corrected_outcome``)."""
  groups = [np.asarray(g, np.float64) for g in normalized_seeds]
  if not groups:
    nan = float("nan")
    return Summary(nan, nan, nan, nan, nan, nan, 0, 0, 0, 0, 0, 0, 0, 0, 0)
  pooled = np.concatenate(groups)
  med = bootstrap_interval(groups, median, num_resamples=num_resamples,
                           seed=seed)
  iqm = bootstrap_interval(groups, interquartile_mean,
                           num_resamples=num_resamples, seed=seed)
  return Summary(
      median=median(pooled), median_low=med[0], median_high=med[1],
      iqm=interquartile_mean(pooled), iqm_low=iqm[0], iqm_high=iqm[1],
      wins=list(outcomes).count(WIN), ties=list(outcomes).count(TIE),
      losses=list(outcomes).count(LOSS),
      baseline_wins=list(baseline_outcomes).count(WIN),
      baseline_ties=list(baseline_outcomes).count(TIE),
      baseline_losses=list(baseline_outcomes).count(LOSS),
      diverged=int(np.sum(np.isinf(pooled))), num_seeds=int(pooled.size),
      num_workloads=len(groups))


def performance_profile(normalized: Sequence[float],
                        taus: Sequence[float]) -> np.ndarray:
  """Fraction of workloads whose normalised loss is <= each tau."""
  norm = np.asarray(normalized, np.float64)
  if norm.size == 0:
    return np.full(len(taus), np.nan)
  return np.mean(norm[None, :] <= np.asarray(taus, np.float64)[:, None],
                 axis=1)


# -- benchmark v2: per-seed normalisation, intervals, corrected tests ---------


def seed_normalized(test_loss: Sequence[float], diverged: Sequence[bool],
                    reference_mean: float) -> np.ndarray:
  """Per-seed test loss / the normaliser's mean test loss; diverged = +inf.

  A diverged seed is infinitely bad rather than a number (the old 1e3 cap
  made means and geometric means count divergences): the median and the
  interquartile mean stay finite while fewer than half (a quarter) of the
  seeds diverged, and ``divergences`` are reported next to them.
  """
  if not reference_mean > 0 or not np.isfinite(reference_mean):
    raise ValueError(f"reference_mean={reference_mean!r}; allowed: a finite "
                     "number > 0.")
  loss = np.asarray(test_loss, np.float64)
  div = np.asarray(diverged, bool) | ~np.isfinite(loss)
  return np.where(div, np.inf, loss / reference_mean)


def interquartile_mean(x: Sequence[float]) -> float:
  """Mean of the middle half of ``x`` (Agarwal et al. 2021's IQM).

  The 25% trimmed mean with fractional end weights, so it is defined for
  any size: the lowest and highest ``n/4`` values (fractions included) are
  dropped. ``+inf`` values (diverged seeds) count as the largest; the IQM is
  infinite only when they reach into the middle half.
  """
  v = np.sort(np.asarray(x, np.float64).ravel())
  n = v.size
  if n == 0:
    return float("nan")
  lo, hi = n / 4.0, 3.0 * n / 4.0
  # Weight of value i: the overlap of [i, i + 1) with [lo, hi).
  i = np.arange(n)
  w = np.clip(np.minimum(i + 1, hi) - np.maximum(i, lo), 0.0, None)
  keep = w > 0
  if np.any(np.isinf(v[keep])):
    return float("inf")
  return float(np.sum(v[keep] * w[keep]) / np.sum(w[keep]))


def median(x: Sequence[float]) -> float:
  """The median, +inf when more than half the values are +inf."""
  v = np.sort(np.asarray(x, np.float64).ravel())
  if v.size == 0:
    return float("nan")
  n = v.size
  a, b = v[(n - 1) // 2], v[n // 2]
  if np.isinf(a) or np.isinf(b):
    return float(max(a, b))
  return float((a + b) / 2)


STATISTICS = {"median": median, "iqm": interquartile_mean}


def bootstrap_interval(groups: Sequence[Sequence[float]],
                       statistic: Callable[[np.ndarray], float], *,
                       num_resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> Tuple[float, float]:
  """Percentile bootstrap interval of ``statistic`` over groups and members.

  Two-level (Agarwal et al. 2021, stratified over tasks): each resample
  draws the groups (workloads) with replacement, then within each drawn
  group its members (seeds) with replacement, and applies ``statistic`` to
  all drawn values pooled. The interval is the ``(1 - level) / 2`` and
  ``(1 + level) / 2`` quantiles of the resampled statistic (lower / higher
  order statistic, so values stay attainable).

  Args:
    groups: one sequence of values per group (groups may differ in size).
    statistic: pooled values -> a number (``median``, ``interquartile_mean``).
    num_resamples: bootstrap resamples.
    seed: of the resampling (``numpy.random.default_rng``); fixed, so a
      report is a function of its runs.
    level: the interval's coverage.
  """
  groups = [np.asarray(g, np.float64).ravel() for g in groups]
  if not groups or any(g.size == 0 for g in groups):
    raise ValueError("bootstrap_interval needs at least one group, none "
                     "empty.")
  if not 0 < level < 1:
    raise ValueError(f"level={level!r}; allowed: (0, 1).")
  rng = np.random.default_rng(seed)
  stats = np.empty(num_resamples)
  k = len(groups)
  for r in range(num_resamples):
    chosen = rng.integers(0, k, k)
    pooled = [groups[g][rng.integers(0, groups[g].size, groups[g].size)]
              for g in chosen]
    stats[r] = statistic(np.concatenate(pooled))
  tail = (1.0 - level) / 2.0
  return (float(np.quantile(stats, tail, method="lower")),
          float(np.quantile(stats, 1.0 - tail, method="higher")))


def intervals_overlap(a: Tuple[float, float], b: Tuple[float, float]) -> bool:
  return a[0] <= b[1] and b[0] <= a[1]


def rank_p(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sided Mann-Whitney U p-value (exact for small samples).

  Rank-based, so a diverged seed (+inf) is simply the worst rank and no
  cap value enters the test; NaN when either sample has fewer than 2
  values or all values are equal.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or len(b) < 2:
    return float("nan")
  both = np.concatenate([a, b])
  if np.all(both == both[0]):
    return float("nan")
  # Ranks are invariant to a monotone map: +inf becomes one value above
  # every finite one (scipy's exact method refuses infinities).
  finite = both[np.isfinite(both)]
  top = (np.max(finite) + 1.0) * 2.0 if finite.size else 1.0
  a, b = np.where(np.isinf(a), top, a), np.where(np.isinf(b), top, b)
  return float(scipy.stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
  """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order.

  The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0),
  then made non-decreasing in that order and capped at 1; rejecting the
  adjusted p < alpha controls the family-wise error at alpha. NaN p-values
  (no test possible) stay NaN and do not count in m.
  """
  p = np.asarray(p_values, np.float64)
  out = np.full(p.shape, np.nan)
  ok = np.flatnonzero(np.isfinite(p))
  m = ok.size
  if m == 0:
    return out
  order = ok[np.argsort(p[ok], kind="stable")]
  adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
  out[order] = np.minimum(adjusted, 1.0)
  return out


def corrected_outcome(method_loss: Sequence[float],
                      reference_loss: Sequence[float],
                      adjusted_p: float, alpha: float = ALPHA) -> str:
  """Win / tie / loss at a corrected p-value: the direction by medians
  (``+inf`` = diverged), decided when ``adjusted_p < alpha``."""
  if not (np.isfinite(adjusted_p) and adjusted_p < alpha):
    return TIE
  m, r = median(method_loss), median(reference_loss)
  if m == r:
    return TIE
  return WIN if m < r else LOSS


def steps_to_target(steps: Sequence[int], val_loss: Sequence[float],
                    target: float) -> float:
  """The first evaluation step whose validation loss is <= ``target``;
  +inf if none is (diverged or too slow)."""
  val = np.asarray(val_loss, np.float64)
  hit = np.flatnonzero(np.isfinite(val) & (val <= target))
  return float(steps[hit[0]]) if hit.size else float("inf")


def median_curve(curves: Sequence[Sequence[float]]) -> np.ndarray:
  """The per-step median of several seeds' curves (+inf: diverged)."""
  c = np.asarray(curves, np.float64)
  if c.ndim != 2 or c.shape[0] == 0:
    raise ValueError(f"curves of shape {c.shape}; allowed: (seeds, steps).")
  return np.array([median(c[:, j]) for j in range(c.shape[1])])


def step_ratios(times: Dict[str, float]) -> Dict[str, float]:
  """Each method's time to target / the fastest method's on one workload
  (AlgoPerf's performance ratio); +inf for one that never reached it, and
  every ratio +inf when no method did."""
  finite = [t for t in times.values() if np.isfinite(t) and t > 0]
  best = min(finite) if finite else None
  return {n: (t / best if best is not None and np.isfinite(t) else
              float("inf")) for n, t in times.items()}


PROFILE_TAU_MAX = 4.0   # AlgoPerf's r_max


def profile_area(ratios: Sequence[float],
                 tau_max: float = PROFILE_TAU_MAX) -> float:
  """Area under the performance profile over tau in [1, tau_max], / its
  length: 1 = fastest on every workload, 0 = never within tau_max.

  The profile is the fraction of workloads with ratio <= tau, so a
  workload at ratio r adds ``max(0, tau_max - max(r, 1)) / (tau_max - 1)``
  times 1 / (number of workloads): the area in closed form.
  """
  r = np.asarray(ratios, np.float64)
  if r.size == 0:
    return float("nan")
  inside = np.clip(tau_max - np.maximum(r, 1.0), 0.0, None)
  return float(np.mean(inside) / (tau_max - 1.0))


def seeds_disagree(values: Sequence[float],
                   relative_spread: float = 0.1) -> bool:
  """True when a setting's seeds disagree: one diverged (non-finite) or
  their spread (max - min) exceeds ``relative_spread`` of their minimum."""
  v = np.asarray(values, np.float64)
  if v.size == 0 or not np.all(np.isfinite(v)):
    return bool(v.size)
  low = float(np.min(v))
  return bool((np.max(v) - low) > relative_spread * abs(low))
