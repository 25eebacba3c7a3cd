"""Data sets with the papers' splits, as float32 arrays ready to put on device.

Sources, in order (issue 2):
  1. an explicit ``data_dir`` (argument, ``--data_dir`` flag, or the
     ``LR_META_DATA_DIR`` environment variable) holding ``<name>.npz`` with the
     uint8 NHWC arrays ``x_train, y_train, x_test, y_test`` (the format of
     ``shared/datasets``);
  2. TensorFlow Datasets, when installed and able to load;
  3. otherwise a ``DataNotFoundError`` that says how to get the data both ways.

``mnist1d`` (Greydanus 2020) is generated offline from the ``mnist1d`` package
with a fixed seed: the small default that needs no download.

Splits: validation is carved deterministically from the END of the official
training set (Fashion-MNIST 50k/10k/10k, Xu et al. 2019; CIFAR-10 40k/10k/10k),
so the official test set is untouched.
"""

import functools
import os
from typing import NamedTuple, Optional

import numpy as np

DATA_DIR_ENV = "LR_META_DATA_DIR"


class DatasetSpec(NamedTuple):
  num_train: int          # examples kept for training (after carving validation)
  num_val: int            # examples carved from the end of the official train set
  num_classes: int
  image_shape: tuple


SPECS = {
    "fashion_mnist": DatasetSpec(50_000, 10_000, 10, (28, 28, 1)),
    "cifar10": DatasetSpec(40_000, 10_000, 10, (32, 32, 3)),
    "mnist1d": DatasetSpec(3_200, 800, 10, (40,)),
}
KNOWN_DATASETS = tuple(SPECS)


class Dataset(NamedTuple):
  """Train/validation/test arrays. Images float32 in [0, 1]; labels int32."""
  name: str
  num_classes: int
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray

  def split(self, split: str):
    """Returns ``(x, y)`` of 'train', 'val' or 'test'."""
    return get_split(self, split)


SPLITS = ("train", "val", "test")


def get_split(arrays, split: str):
  """``(arrays.x_<split>, arrays.y_<split>)`` for any container of the splits."""
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; allowed: {SPLITS}.")
  return getattr(arrays, f"x_{split}"), getattr(arrays, f"y_{split}")


class DataNotFoundError(FileNotFoundError):
  """Neither a local data directory nor TFDS could provide the data set."""


def _check_name(name: str) -> str:
  if name not in SPECS:
    raise ValueError(
        f"Unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}.")
  return name


def _how_to_get(name: str, tried: list[str]) -> str:
  return (
      f"Could not load dataset {name!r}. Tried: {'; '.join(tried)}.\n"
      f"Get the data either way:\n"
      f"  (a) local files: put {name}.npz (numpy savez with uint8 arrays "
      f"x_train, y_train, x_test, y_test, images NHWC) in a directory and pass "
      f"it as data_dir=..., --data_dir=..., or set {DATA_DIR_ENV}=/path/to/dir "
      f"(the project's shared/datasets has both files);\n"
      f"  (b) TensorFlow Datasets: pip install -e '.[tfds]' on a machine with "
      f"internet, then python -c \"import tensorflow_datasets as tfds; "
      f"tfds.load('{name}')\" to download and prepare it.")


def _load_npz(path: str):
  with np.load(path) as d:
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(d.files)
    if missing:
      raise ValueError(
          f"{path} lacks arrays {sorted(missing)}; expected x_train, y_train, "
          f"x_test, y_test.")
    return d["x_train"], d["y_train"], d["x_test"], d["y_test"]


def _load_tfds(name: str, data_dir: Optional[str]):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  out = []
  for split in ("train", "test"):
    ds = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1,
                                 data_dir=data_dir, download=True))
    out += [ds["image"], ds["label"]]
  return tuple(out)


def _generate_mnist1d(seed: int):
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
  args = get_dataset_args()
  args.seed = seed
  d = make_dataset(args)
  return d["x"], d["y"], d["x_test"], d["y_test"]


def _scale_images(x: np.ndarray) -> np.ndarray:
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  return x.astype(np.float32)


def _assemble(name: str, x_train, y_train, x_test, y_test) -> Dataset:
  spec = SPECS[name]
  if x_train.shape[1:] != spec.image_shape:
    raise ValueError(
        f"{name}: x_train has example shape {x_train.shape[1:]}, expected "
        f"{spec.image_shape}.")
  if len(x_train) != spec.num_train + spec.num_val:
    raise ValueError(
        f"{name}: the official train split has {spec.num_train + spec.num_val} "
        f"examples, got {len(x_train)}.")
  n = spec.num_train
  x_train, x_test = _scale_images(x_train), _scale_images(x_test)
  y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
  return Dataset(name=name, num_classes=spec.num_classes,
                 x_train=x_train[:n], y_train=y_train[:n],
                 x_val=x_train[n:], y_val=y_train[n:],
                 x_test=x_test, y_test=y_test)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: Optional[str], mnist1d_seed: int) -> Dataset:
  if name == "mnist1d":
    return _assemble(name, *_generate_mnist1d(mnist1d_seed))
  tried = []
  if data_dir is not None:
    path = os.path.join(data_dir, f"{name}.npz")
    if os.path.isfile(path):
      return _assemble(name, *_load_npz(path))
    if not os.path.isdir(data_dir):
      tried.append(f"data_dir {data_dir!r} does not exist")
    else:
      tried.append(f"{path} not found")
  else:
    tried.append(f"no data_dir given and {DATA_DIR_ENV} is unset")
  try:
    return _assemble(name, *_load_tfds(name, data_dir))
  except ImportError:
    tried.append("tensorflow_datasets is not installed")
  except Exception as e:  # pylint: disable=broad-except
    tried.append(f"TFDS failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
  raise DataNotFoundError(_how_to_get(name, tried))


def load_dataset(name: str, data_dir: Optional[str] = None,
                 mnist1d_seed: int = 0) -> Dataset:
  """Loads ``name`` with the papers' train/validation/test splits.

  Args:
    name: one of ``KNOWN_DATASETS`` ('fashion_mnist', 'cifar10', 'mnist1d').
    data_dir: directory holding ``<name>.npz``; defaults to the
      ``LR_META_DATA_DIR`` environment variable.
    mnist1d_seed: seed of the offline mnist1d generator (fixed by default).

  Returns:
    A ``Dataset`` of numpy arrays (host memory; put it on device once).

  Raises:
    ValueError: unknown name, or a file with the wrong arrays/shapes.
    DataNotFoundError: no source could provide the data; the message says how
      to get it.
  """
  _check_name(name)
  if data_dir is None:
    data_dir = os.environ.get(DATA_DIR_ENV) or None
  return _load_cached(name, data_dir, mnist1d_seed)
