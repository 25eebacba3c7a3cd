"""Scoring: per-workload statistics, normalisation, summaries, profiles.

Pure numpy on per-seed numbers, so every rule is testable on hand-made
values:

* A diverged seed counts as the worst score: test loss = the workload's
  divergence cap (``lr_meta.tasks`` caps every loss there), accuracy 0. It
  stays in every mean; it is never dropped.
* Normalised test loss = method's mean test loss / the tuned cosine
  reference's mean test loss on the same workload (< 1: better).
* Welch's t-test (unequal variances) against the tuned cosine and the best
  constant LR; win / tie / loss against the cosine at p < 0.05.
* Per method over a set of workloads (the held-out side): median and
  geometric mean of the normalised loss and the win / tie / loss counts.
* Performance profile (Dolan & Moré 2002, as AlgoPerf plots it): the
  fraction of workloads whose normalised loss is <= tau.
"""

from typing import Dict, Iterable, NamedTuple, Sequence

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


def outcome(method_loss: Sequence[float], reference_loss: Sequence[float],
            alpha: float = ALPHA) -> str:
  """``'win'``, ``'tie'`` or ``'loss'`` of a method against a reference.

  A win (loss) is a lower (higher) mean test loss with Welch p < ``alpha``.
  Two constant samples (p undefined: e.g. every seed diverged in both) are
  decided by their means, equal means tie.
  """
  m, r = float(np.mean(method_loss)), float(np.mean(reference_loss))
  p = welch_p(method_loss, reference_loss)
  decided = (p < alpha) if np.isfinite(p) else (m != r)
  if not decided or m == r:
    return TIE
  return WIN if m < r else LOSS


def normalized_loss(method_loss: Sequence[float],
                    reference_loss: Sequence[float]) -> float:
  """Mean test loss of the method / mean test loss of the reference."""
  ref = float(np.mean(reference_loss))
  if not ref > 0:
    raise ValueError(f"reference mean loss {ref!r} must be > 0.")
  return float(np.mean(method_loss)) / ref


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


def geometric_mean(x: Iterable[float]) -> float:
  x = np.asarray(list(x), np.float64)
  if x.size == 0:
    return float("nan")
  if np.any(x <= 0):
    raise ValueError(f"geometric mean of non-positive values {x.tolist()}.")
  return float(np.exp(np.mean(np.log(x))))


class WorkloadScore(NamedTuple):
  """One method on one workload."""
  loss_mean: float
  loss_std: float
  accuracy_mean: float
  accuracy_std: float
  diverged: int
  num_seeds: int
  normalized: float
  p_reference: float
  p_best_constant: float
  outcome: str


def score_workload(scores: Dict[str, SeedScores], reference: str,
                   best_constant: str) -> Dict[str, WorkloadScore]:
  """Scores of every method on one workload (``scores`` keyed by method)."""
  for name in (reference, best_constant):
    if name not in scores:
      raise ValueError(f"the reference {name!r} is missing; have "
                       f"{sorted(scores)}.")
  ref = scores[reference].test_loss
  const = scores[best_constant].test_loss
  out = {}
  for name, s in scores.items():
    out[name] = WorkloadScore(
        loss_mean=float(np.mean(s.test_loss)),
        loss_std=float(np.std(s.test_loss)),
        accuracy_mean=float(np.mean(s.test_accuracy)),
        accuracy_std=float(np.std(s.test_accuracy)),
        diverged=int(np.sum(s.diverged)), num_seeds=len(s.test_loss),
        normalized=normalized_loss(s.test_loss, ref),
        p_reference=welch_p(s.test_loss, ref),
        p_best_constant=welch_p(s.test_loss, const),
        outcome=outcome(s.test_loss, ref))
  return out


class Summary(NamedTuple):
  """One method over a set of workloads."""
  median: float
  geometric_mean: float
  wins: int
  ties: int
  losses: int
  num_workloads: int


def summarize(per_workload: Sequence[WorkloadScore]) -> Summary:
  """Median / geometric mean of normalised loss, and W/T/L counts."""
  norm = [s.normalized for s in per_workload]
  outcomes = [s.outcome for s in per_workload]
  return Summary(
      median=float(np.median(norm)) if norm else float("nan"),
      geometric_mean=geometric_mean(norm),
      wins=outcomes.count(WIN), ties=outcomes.count(TIE),
      losses=outcomes.count(LOSS), num_workloads=len(norm))


def performance_profile(normalized: Sequence[float],
                        taus: Sequence[float]) -> np.ndarray:
  """Fraction of workloads whose normalised loss is <= each tau."""
  norm = np.asarray(normalized, np.float64)
  if norm.size == 0:
    return np.full(len(taus), np.nan)
  return np.mean(norm[None, :] <= np.asarray(taus, np.float64)[:, None],
                 axis=1)
