"""Loop reference of the Fu 2016 weight statistics (tests only).

An independent numpy/scipy computation of ``lr_meta.features.weight_stats``:
the 12 statistics ``g`` with scipy's estimators, and the 193-vector built
with loops over numpy slices of a ``(kh, kw, in, out)`` kernel (no reshapes).
"""

import numpy as np
from scipy import stats as sp_stats


def scipy_stats(x, zero_if_constant=False):
  """Independent reference for the 12 statistics ``g`` (float64).

  scipy gives a constant set (e.g. one weight) nan skewness and kurtosis;
  ``zero_if_constant`` makes them 0, the library's convention.
  """
  x = np.asarray(x, np.float64).ravel()
  stats = np.array([
      np.mean(x),
      np.quantile(x, 0.25),
      np.median(x),
      np.quantile(x, 0.75),
      np.std(x),
      sp_stats.skew(x),
      sp_stats.kurtosis(x),  # Fisher, biased: scipy defaults.
      sp_stats.moment(x, 1),
      sp_stats.moment(x, 2),
      sp_stats.moment(x, 3),
      sp_stats.moment(x, 4),
      sp_stats.moment(x, 5),
  ])
  if zero_if_constant and np.all(x == x[0]):
    stats[5:7] = 0.0
  return stats


def reference_features(kernel, prev_lr, zero_if_constant=False):
  """The 193-vector built with loops over numpy slices (no reshapes).

  ``zero_if_constant`` as in ``scipy_stats``: needed where some set is
  constant, e.g. the 1x1 filters (single weights) of a dense kernel.
  """
  k = np.asarray(kernel, np.float64)
  _, _, cin, cout = k.shape

  def g(x):
    return scipy_stats(x, zero_if_constant)

  def h(rows):
    rows = np.asarray(rows)
    return np.stack([rows.mean(0), np.median(rows, 0), rows.std(0),
                     rows.max(0), rows.min(0)]).ravel()

  whole = g(k)
  rows = h([g(k[:, :, i, :]) for i in range(cin)])
  cols = h([g(k[:, :, :, j]) for j in range(cout)])
  filters = h([g(k[:, :, i, j])
               for i in range(cin) for j in range(cout)])
  return np.concatenate([whole, rows, cols, filters, [prev_lr]])
