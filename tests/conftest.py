"""Shared test setup: where the real data sets live."""

import os
import pathlib

import hypothesis
import pytest

# Property tests draw the same examples on every run: a CI failure is then a
# failure of the code, reproducible here, not of the draw.
hypothesis.settings.register_profile("lr_meta", derandomize=True)
hypothesis.settings.load_profile("lr_meta")

_REPO = pathlib.Path(__file__).resolve().parents[1]
_DEFAULT_DATA_DIR = _REPO.parent / "shared" / "datasets"

if "LR_META_DATA_DIR" not in os.environ and _DEFAULT_DATA_DIR.is_dir():
  os.environ["LR_META_DATA_DIR"] = str(_DEFAULT_DATA_DIR)


@pytest.fixture(scope="session")
def data_dir() -> str:
  path = os.environ.get("LR_META_DATA_DIR")
  if not path or not pathlib.Path(path).is_dir():
    raise RuntimeError(
        "Tests need the real data sets: set LR_META_DATA_DIR to a directory "
        "holding fashion_mnist.npz and cifar10.npz (../shared/datasets).")
  return path


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return _REPO


@pytest.fixture
def run_notebook(data_dir):
  """``run(name, query=None, **sizes) -> (notebook, value of query)``.

  Executes ``notebooks/<name>`` as a user runs it (``tests/notebook_runner``:
  a fresh kernel in ``notebooks/``, only the installed package on the path,
  the data from ``LR_META_DATA_DIR``). Notebooks read their small test sizes
  from ``LR_META_NOTEBOOK_*`` environment variables (the keyword arguments),
  so the same file runs at full size for users.
  """
  del data_dir   # required: the conftest has set LR_META_DATA_DIR
  import notebook_runner  # pylint: disable=g-import-not-at-top
  return notebook_runner.execute


@pytest.fixture
def resume_check(tmp_path):
  """``check(train) -> (dir_a, resumed, dir_b, straight)``.

  ``train(num_iterations, workdir)`` returns the learner state. It runs 2
  iterations in ``dir_a``, then again to 4 there (restoring iteration 2 from
  the checkpoint), and 4 straight in ``dir_b``; both states must be at
  iteration 4 and equal leaf for leaf, bit for bit.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  def check(train):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train(2, a)
    resumed = train(4, a)
    straight = train(4, b)
    assert int(resumed.iteration) == int(straight.iteration) == 4
    for x, y in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
      np.testing.assert_array_equal(x, y)
    return a, resumed, b, straight
  return check


@pytest.fixture
def run_on_four_devices(repo_root):
  """``run(code, timeout=300)``: runs the (dedented) Python ``code`` in a
  fresh interpreter on 4 forced CPU devices (``XLA_FLAGS=
  --xla_force_host_platform_device_count=4``: the device count is fixed when
  JAX starts) and asserts that it exited cleanly and printed ``OK``."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import textwrap  # pylint: disable=g-import-not-at-top

  def run(code: str, timeout: int = 300):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(repo_root)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                         capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=timeout)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
  return run
