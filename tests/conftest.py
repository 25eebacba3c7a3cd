"""Shared test setup: where the real data sets live."""

import os
import pathlib

import pytest

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
