"""Data sets with the papers' splits, held as stored and scaled on use.

Sources, in order (issue 2):
  1. an explicit ``data_dir`` (argument, ``--data_dir`` flag, or the
     ``LR_META_DATA_DIR`` environment variable) holding ``<name>.npz`` with the
     uint8 NHWC arrays ``x_train, y_train, x_test, y_test`` (the format of
     ``shared/datasets``);
  2. TensorFlow Datasets, when installed and able to load;
  3. otherwise a ``DataNotFoundError`` that says how to get the data both ways.

``mnist1d`` (Greydanus 2020) is generated offline from the ``mnist1d`` package
with a fixed seed: the small default that needs no download.

Sequence data sets (``SEQUENCE_DATASETS``) hold token streams instead of
examples: ``tiny_shakespeare`` (a local ``tiny_shakespeare.txt`` under the
same data-directory rules, else TFDS ``tiny_shakespeare``) and ``markov``, a
seeded synthetic character source for the *training* side of meta-training
(``markov_chain``), so controllers can learn on sequence models without ever
reading the held-out text. Each split is its own stream, stored as next-token
pairs: ``x_<split>[t]`` is token ``t`` and ``y_<split>[t]`` token ``t + 1``,
so a window of ``L`` consecutive pairs (``lr_meta.tasks.Task``) never crosses
a split boundary. Tiny Shakespeare's split is TFDS's: the first 90% of the
characters for training (1,003,854), the last 10% halved into validation and
test (55,770 each), so the common 90/10 validation tenth is our validation
plus test. The vocabulary is the sorted set of the file's characters (65).

Splits: validation is carved deterministically from the END of the official
training set (Fashion-MNIST 50k/10k/10k, Xu et al. 2019; CIFAR-10 40k/10k/10k),
so the official test set is untouched.

Every source passes one validator (``validate_arrays``) once per load, before
any scaling, so a bad file fails with a ``DataFormatError`` that names the
file (or source), the array, what was found and what is allowed, instead of
surfacing later as "every run diverged". The format, per split:

* images: ``uint8`` of shape ``(N,) + image_shape`` (NHWC), pixels 0..255,
  scaled to float32 in [0, 1] on use (``scale_features``). Float or wider-integer images are refused,
  even when their values look scaled: one stored format, no guessing whether
  a float array is in [0, 1] or 0..255 (the error says how to convert).
  mnist1d's features are the exception: finite floats, kept as they are;
* labels: any integer dtype, shape ``(N,)``, values in ``0..num_classes-1``;
* as many labels as images; exactly ``num_train + num_val`` training examples.

Local files are read with ``allow_pickle=False``: a pickled or object-array
file is refused, never executed.
"""

import dataclasses
import functools
import os
import tokenize
import zipfile
import zlib
from typing import Mapping, NamedTuple, Optional

import numpy as np

DATA_DIR_ENV = "LR_META_DATA_DIR"


class DatasetSpec(NamedTuple):
  num_train: int          # examples kept for training (after carving validation)
  num_val: int            # examples carved from the end of the official train set
  num_classes: int
  image_shape: tuple
  # 'uint8': images 0..255, scaled to [0, 1]; 'float': finite real features;
  # 'tokens': a character stream (num_* count characters, num_classes is the
  # vocabulary size).
  features: str = "uint8"
  num_test: Optional[int] = None   # sequence data sets: test characters


class MarkovSpec(NamedTuple):
  """A seeded hierarchical Markov chain over ``vocab_size`` symbols.

  Language-like by construction: symbol frequencies follow Zipf's law
  (exponent ``zipf_exponent``); each order-``j`` context's next-symbol
  distribution is drawn from a Dirichlet centred on its order-``j - 1``
  suffix's, with concentration ``concentrations[j - 1] * vocab_size``
  (smaller: further from the parent, more to learn from longer context).
  So a model gains first from unigram frequencies, then from bigram and
  trigram structure, as on text; the chain's order is
  ``len(concentrations)``. The stream starts from context 0 and is cut into
  train / validation / test in that order.
  """
  vocab_size: int = 48
  zipf_exponent: float = 1.0
  concentrations: tuple = (0.5, 0.3)
  num_train: int = 400_000
  num_val: int = 40_000
  num_test: int = 40_000
  seed: int = 0

  @property
  def order(self) -> int:
    return len(self.concentrations)


SPECS = {
    "fashion_mnist": DatasetSpec(50_000, 10_000, 10, (28, 28, 1)),
    "cifar10": DatasetSpec(40_000, 10_000, 10, (32, 32, 3)),
    "mnist1d": DatasetSpec(3_200, 800, 10, (40,), features="float"),
    "tiny_shakespeare": DatasetSpec(1_003_854, 55_770, 65, (),
                                    features="tokens", num_test=55_770),
    "markov": DatasetSpec(MarkovSpec().num_train, MarkovSpec().num_val,
                          MarkovSpec().vocab_size, (), features="tokens",
                          num_test=MarkovSpec().num_test),
}
MARKOV = MarkovSpec()
KNOWN_DATASETS = tuple(SPECS)
SEQUENCE_DATASETS = tuple(n for n, s in SPECS.items() if s.features == "tokens")
TEXT_FILES = {"tiny_shakespeare": "tiny_shakespeare.txt"}
# The arrays every source provides (the official train and test splits).
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


# Every uint8 pixel value in [0, 1], divided exactly once here: a lookup is
# the same float32 on any device (XLA turns a division by a constant into a
# multiplication by its reciprocal, which differs in the last bit).
PIXEL_VALUES = np.arange(256, dtype=np.float32) / np.float32(255)


def scale_features(x):
  """Features as models read them: stored uint8 images scaled to float32 in [0, 1].

  Works on numpy and jax arrays alike, with the same bits (``make_task``
  scales on device, so the host keeps only the 4x smaller uint8 images); any
  other dtype (float features, int32 tokens) is returned as it is.
  """
  if x.dtype != np.uint8:
    return x
  if isinstance(x, np.ndarray):
    return PIXEL_VALUES[x]
  import jax.numpy as jnp   # pylint: disable=g-import-not-at-top
  return jnp.asarray(PIXEL_VALUES)[x]


def _features_property(split: str) -> property:
  return property(lambda self: scale_features(self.stored[f"x_{split}"]),
                  doc=f"``{split}`` features as float32 (a new array when "
                      f"stored as uint8).")


def _labels_property(split: str) -> property:
  return property(lambda self: self.stored[f"y_{split}"],
                  doc=f"``{split}`` labels (int32).")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train/validation/test arrays. Images float32 in [0, 1]; labels int32.

  Held as stored (``stored``: images uint8, a quarter of float32; a process
  caches every data set it loaded, so CIFAR-10 holds 184 MB instead of 737 MB);
  ``x_<split>`` and ``split`` give the float32 features, a new array on each
  access for images. ``stored_split`` gives the arrays as held, for code that
  slices first and scales on device (``make_task``).

  Sequence data sets (``is_sequence``): every split is a stream of next-token
  pairs, ``x`` token ``t`` and ``y`` token ``t + 1`` (int32, 1-D), and
  ``vocabulary`` spells the tokens (``decode``).
  """
  name: str
  num_classes: int
  stored: Mapping[str, np.ndarray]
  vocabulary: Optional[str] = None

  x_train = _features_property("train")
  x_val = _features_property("val")
  x_test = _features_property("test")
  y_train = _labels_property("train")
  y_val = _labels_property("val")
  y_test = _labels_property("test")

  @property
  def is_sequence(self) -> bool:
    return self.vocabulary is not None

  def decode(self, tokens) -> str:
    """The text of integer ``tokens`` (sequence data sets)."""
    if self.vocabulary is None:
      raise ValueError(f"{self.name!r} is not a sequence data set.")
    return "".join(self.vocabulary[int(t)] for t in np.asarray(tokens).ravel())

  def split(self, split: str):
    """Returns ``(x, y)`` of 'train', 'val' or 'test', features as float32."""
    return get_split(self, split)

  def stored_split(self, split: str):
    """``(x, y)`` of ``split`` as stored (see ``scale_features``)."""
    get_split(self, split)   # checks the name
    return self.stored[f"x_{split}"], self.stored[f"y_{split}"]


SPLITS = ("train", "val", "test")


def get_split(arrays, split: str):
  """``(arrays.x_<split>, arrays.y_<split>)`` for any container of the splits."""
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; allowed: {SPLITS}.")
  return getattr(arrays, f"x_{split}"), getattr(arrays, f"y_{split}")


class DataNotFoundError(FileNotFoundError):
  """Neither a local data directory nor TFDS could provide the data set."""


class DataFormatError(ValueError):
  """A data file or source is unreadable or holds arrays of the wrong format.

  The message names the file (or source), the array, what was found and what
  is allowed.
  """


def _check_name(name: str) -> str:
  if name not in SPECS:
    raise ValueError(
        f"Unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}.")
  return name


def _how_to_get(name: str, tried: list[str]) -> str:
  if SPECS[name].features == "tokens":
    what = f"{local_file_name(name)} (the plain text)"
  else:
    what = (f"{name}.npz (numpy savez with uint8 arrays x_train, y_train, "
            f"x_test, y_test, images NHWC)")
  return (
      f"Could not load dataset {name!r}. Tried: {'; '.join(tried)}.\n"
      f"Get the data either way:\n"
      f"  (a) local files: put {what} in a directory and pass "
      f"it as data_dir=..., --data_dir=..., or set {DATA_DIR_ENV}=/path/to/dir "
      f"(the project's shared/datasets has the files);\n"
      f"  (b) TensorFlow Datasets: pip install -e '.[tfds]' on a machine with "
      f"internet, then python -c \"import tensorflow_datasets as tfds; "
      f"tfds.load('{name}')\" to download and prepare it.")


def _describe_non_zip(path: str) -> str:
  """What a file that is not a zip archive looks like, from its first bytes."""
  with open(path, "rb") as f:
    head = f.read(16)
  if not head:
    return "an empty file"
  if head.startswith(b"PK"):
    return "a zip archive cut short (truncated: its end-of-archive record is missing)"
  if head.startswith(b"\x93NUMPY"):
    return "a single .npy array (numpy.save), not an .npz archive of four arrays"
  if head[:1] == b"\x80":
    return "a Python pickle"
  return f"neither a zip archive nor numpy data (it starts with {head!r})"


def _load_npz(path: str) -> dict:
  """The four arrays of ``path``, read without pickle; DataFormatError if unreadable."""
  expected = (f"a numpy.savez/savez_compressed archive of the arrays "
              f"{', '.join(ARRAY_KEYS)}")
  if not zipfile.is_zipfile(path):
    raise DataFormatError(
        f"{path}: not a readable .npz file: {_describe_non_zip(path)}; "
        f"allowed: {expected}.")
  try:
    npz = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile,
          NotImplementedError) as e:   # e.g. a damaged zip version field
    raise DataFormatError(
        f"{path}: not a readable .npz file ({type(e).__name__}: {e}); "
        f"allowed: {expected}.") from e
  with npz:
    missing = [k for k in ARRAY_KEYS if k not in npz.files]
    if missing:
      raise DataFormatError(
          f"{path}: missing arrays {missing} (found {sorted(npz.files)}); "
          f"allowed: {expected}.")
    arrays = {}
    for key in ARRAY_KEYS:
      try:
        arrays[key] = npz[key]
      except ValueError as e:  # e.g. an object array, which needs pickle
        raise DataFormatError(
            f"{path}: array {key!r} cannot be read ({e}); allowed: plain "
            f"numeric arrays (uint8 images, integer labels), no pickle."
        ) from e
      # A damaged member: its zip entry (flags read as encryption or an
      # unknown compression: RuntimeError, NotImplementedError) or its .npy
      # header (parsed as Python source: SyntaxError, tokenize.TokenError).
      except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError,
              NotImplementedError, SyntaxError, tokenize.TokenError) as e:
        raise DataFormatError(
            f"{path}: array {key!r} is corrupt ({type(e).__name__}: {e}); "
            f"allowed: {expected}.") from e
  return arrays


def _load_tfds(name: str, data_dir: Optional[str]) -> dict:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  arrays = {}
  for split in ("train", "test"):
    ds = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1,
                                 data_dir=data_dir, download=True))
    arrays[f"x_{split}"], arrays[f"y_{split}"] = ds["image"], ds["label"]
  return arrays


def _generate_mnist1d(seed: int) -> dict:
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
  args = get_dataset_args()
  args.seed = seed
  d = make_dataset(args)
  return dict(x_train=d["x"], y_train=d["y"], x_test=d["x_test"],
              y_test=d["y_test"])


def _value_range(a: np.ndarray) -> str:
  return f"{a.min()}..{a.max()}" if a.size else "no values"


def _check_features(name: str, source: str, key: str, x) -> None:
  spec = SPECS[name]
  x = np.asarray(x)
  dims = ", ".join(str(d) for d in spec.image_shape)
  if spec.features == "uint8":
    allowed = f"uint8 NHWC images of shape (N, {dims}), pixels 0..255"
  else:
    allowed = f"finite float features of shape (N, {dims})"
  if x.ndim != 1 + len(spec.image_shape) or x.shape[1:] != spec.image_shape:
    raise DataFormatError(
        f"{source}: {key} has shape {x.shape}; allowed: {allowed}.")
  if not len(x):
    raise DataFormatError(f"{source}: {key} has no examples; allowed: {allowed}.")
  if spec.features == "uint8":
    if x.dtype != np.uint8:
      raise DataFormatError(
          f"{source}: {key} has dtype {x.dtype} (values {_value_range(x)}); "
          f"allowed: {allowed} (scaled to [0, 1] at load). Float and wider "
          f"integer images are refused rather than guessed at: convert with "
          f"np.round(x * 255).astype(np.uint8) for floats in [0, 1], or "
          f"x.astype(np.uint8) for integers in 0..255.")
  elif x.dtype.kind != "f" or not np.isfinite(x).all():
    bad = "non-finite values" if x.dtype.kind == "f" else f"dtype {x.dtype}"
    raise DataFormatError(f"{source}: {key} has {bad}; allowed: {allowed}.")


def _check_labels(name: str, source: str, key: str, y) -> None:
  classes = SPECS[name].num_classes
  y = np.asarray(y)
  allowed = (f"integer labels of shape (N,) in 0..{classes - 1} (the "
             f"{classes} classes of {name!r})")
  if y.ndim != 1:
    raise DataFormatError(f"{source}: {key} has shape {y.shape}; allowed: {allowed}.")
  if y.dtype.kind not in "iu":
    raise DataFormatError(
        f"{source}: {key} has dtype {y.dtype} (values {_value_range(y)}); "
        f"allowed: {allowed}.")
  outside = (y < 0) | (y >= classes)
  if outside.any():
    first = int(np.argmax(outside))
    raise DataFormatError(
        f"{source}: {key} holds labels {_value_range(y)}: "
        f"{int(outside.sum())} outside 0..{classes - 1}, the first "
        f"{y[first]} at index {first}; allowed: {allowed}.")


def validate_arrays(name: str, source: str,
                    arrays: Mapping[str, np.ndarray]) -> None:
  """Checks the raw arrays of ``name`` from any source (see the module docstring).

  Vectorised numpy, once per load: the images' dtype and shape (no pass over
  uint8 pixels, whose every value is allowed), one pass over the labels.

  Args:
    name: one of ``KNOWN_DATASETS``.
    source: what the arrays came from (a file path, 'TFDS ...'), for errors.
    arrays: ``x_train, y_train, x_test, y_test``, the official splits.

  Raises:
    DataFormatError: a missing array, wrong shape or dtype, a label outside
      ``0..num_classes-1``, unequal image/label counts, or a training split
      of the wrong size; the message names ``source`` and the array.
  """
  spec = SPECS[_check_name(name)]
  missing = [k for k in ARRAY_KEYS if k not in arrays]
  if missing:
    raise DataFormatError(f"{source}: missing arrays {missing}; allowed: "
                          f"the arrays {', '.join(ARRAY_KEYS)}.")
  for split in ("train", "test"):
    x_key, y_key = f"x_{split}", f"y_{split}"
    _check_features(name, source, x_key, arrays[x_key])
    _check_labels(name, source, y_key, arrays[y_key])
    if len(arrays[x_key]) != len(arrays[y_key]):
      raise DataFormatError(
          f"{source}: {x_key} has {len(arrays[x_key])} examples but {y_key} "
          f"has {len(arrays[y_key])} labels; allowed: one label per example.")
  total = spec.num_train + spec.num_val
  if len(arrays["x_train"]) != total:
    raise DataFormatError(
        f"{source}: x_train has {len(arrays['x_train'])} examples; allowed: "
        f"exactly {total}, the official training split of {name!r} "
        f"({spec.num_train} train + {spec.num_val} validation carved from "
        f"its end).")


def _stored_features(x: np.ndarray) -> np.ndarray:
  """uint8 images as they are (scaled on use), other features as float32."""
  return x if x.dtype == np.uint8 else x.astype(np.float32)


def _assemble(name: str, source: str, arrays: Mapping[str, np.ndarray]) -> Dataset:
  """Validates the official splits and carves validation from train's end."""
  validate_arrays(name, source, arrays)
  n = SPECS[name].num_train
  x_train, x_test = (_stored_features(np.asarray(arrays[k]))
                     for k in ("x_train", "x_test"))
  y_train, y_test = (np.asarray(arrays[k]).astype(np.int32)
                     for k in ("y_train", "y_test"))
  return Dataset(name=name, num_classes=SPECS[name].num_classes,
                 stored=dict(x_train=x_train[:n], y_train=y_train[:n],
                             x_val=x_train[n:], y_val=y_train[n:],
                             x_test=x_test, y_test=y_test))


# -- sequence data ---------------------------------------------------------------

# Characters allowed in a text file besides the printable ASCII range.
_TEXT_CONTROLS = frozenset("\n\t")


def _decode_text(path: str, raw: bytes) -> str:
  """``raw`` as text, or a DataFormatError naming ``path``."""
  allowed = "plain UTF-8 text"
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataFormatError(
        f"{path}: not a text file (byte {raw[e.start]:#04x} at offset "
        f"{e.start} is not UTF-8); allowed: {allowed}.") from e


def _read_text(path: str) -> str:
  with open(path, "rb") as f:
    return _decode_text(path, f.read())


def _load_tfds_text(name: str, data_dir: Optional[str]) -> str:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  parts = []
  for split in ("train", "validation", "test"):
    ds = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1,
                                 data_dir=data_dir, download=True))
    parts.append(b"".join(ds["text"]).decode("utf-8"))
  return "".join(parts)


def validate_text(name: str, source: str, text: str) -> None:
  """Checks a character data set's text (``SEQUENCE_DATASETS`` read from text).

  Raises:
    DataFormatError: control characters other than newline and tab (a binary
      file), a length other than the data set's (a truncated or edited
      file), or a vocabulary of another size; the message names ``source``.
  """
  spec = SPECS[_check_name(name)]
  expected = spec.num_train + spec.num_val + spec.num_test
  allowed = (f"the {expected:,} characters of {name!r} as plain text "
             f"({spec.num_classes} distinct characters)")
  if not text:
    raise DataFormatError(f"{source}: an empty file; allowed: {allowed}.")
  raw = np.frombuffer(text.encode("utf-8"), np.uint8)
  printable = (raw >= 0x20) & (raw <= 0x7e)
  for c in _TEXT_CONTROLS:
    printable |= raw == ord(c)
  if not printable.all():
    i = int(np.argmin(printable))
    raise DataFormatError(
        f"{source}: not a text file of {name!r} (byte {raw[i]:#04x} at "
        f"offset {i} is not printable ASCII); allowed: {allowed}.")
  if len(text) != expected:
    raise DataFormatError(
        f"{source}: {len(text):,} characters (truncated or not the "
        f"original file); allowed: {allowed}.")
  vocabulary = sorted(set(text))
  if len(vocabulary) != spec.num_classes:
    raise DataFormatError(
        f"{source}: {len(vocabulary)} distinct characters; allowed: {allowed}.")


def _pairs(tokens: np.ndarray):
  """Next-token pairs of one split's stream: (token t, token t + 1)."""
  tokens = np.asarray(tokens, np.int32)
  return tokens[:-1], tokens[1:]


def _assemble_sequence(name: str, tokens: np.ndarray,
                       vocabulary: str) -> Dataset:
  """Cuts ``tokens`` into train / validation / test streams (in that order)."""
  spec = SPECS[name]
  ends = np.cumsum([spec.num_train, spec.num_val, spec.num_test])
  streams = np.split(np.asarray(tokens, np.int32), ends[:-1])
  arrays = {}
  for split, stream in zip(SPLITS, streams):
    arrays[f"x_{split}"], arrays[f"y_{split}"] = _pairs(stream)
  return Dataset(name=name, num_classes=len(vocabulary),
                 vocabulary=vocabulary, stored=arrays)


def _assemble_text(name: str, source: str, text: str) -> Dataset:
  validate_text(name, source, text)
  vocabulary = "".join(sorted(set(text)))
  lookup = np.zeros(128, np.int32)
  lookup[[ord(c) for c in vocabulary]] = np.arange(len(vocabulary))
  codes = np.frombuffer(text.encode("ascii"), np.uint8)
  return _assemble_sequence(name, lookup[codes], vocabulary)


# Printable symbols that spell the synthetic chains' tokens.
_MARKOV_SYMBOLS = ("abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'-()")


def markov_transitions(spec: MarkovSpec = MARKOV) -> np.ndarray:
  """``(vocab_size**order, vocab_size)`` next-symbol probabilities per context.

  Context ``c`` encodes the last ``order`` symbols in base ``vocab_size``
  (most recent last): after symbol ``s`` the context becomes
  ``(c * vocab_size + s) % vocab_size**order``, and ``c % vocab_size**j``
  is its order-``j`` suffix (see ``MarkovSpec``).
  """
  rng = np.random.default_rng(spec.seed)
  v = spec.vocab_size
  zipf = 1.0 / np.arange(1, v + 1) ** spec.zipf_exponent
  rows = (zipf / zipf.sum())[None, :]           # order 0: one context
  for concentration in spec.concentrations:
    parent = rows[np.arange(rows.shape[0] * v) % rows.shape[0]]
    alpha = concentration * v * parent
    draws = rng.gamma(alpha)                     # a Dirichlet per row
    total = draws.sum(axis=1, keepdims=True)
    # A row whose gamma draws all underflow to 0 keeps its parent's law.
    rows = np.where(total > 0, draws / np.where(total > 0, total, 1), parent)
  return rows


def markov_entropy_rate(spec: MarkovSpec = MARKOV,
                        iterations: int = 2000) -> float:
  """The chain's entropy rate in nats per symbol: the lowest loss any model
  of the stream can reach (stationary context distribution by power
  iteration)."""
  probs = markov_transitions(spec)
  num_contexts, v = probs.shape
  nxt = (np.arange(num_contexts)[:, None] * v + np.arange(v)) % num_contexts
  pi = np.full(num_contexts, 1.0 / num_contexts)
  for _ in range(iterations):
    new = np.zeros(num_contexts)
    np.add.at(new, nxt.ravel(), (pi[:, None] * probs).ravel())
    pi = new
  with np.errstate(divide="ignore", invalid="ignore"):
    row_entropy = -np.sum(np.where(probs > 0, probs * np.log(probs), 0.0), 1)
  return float(pi @ row_entropy)


def markov_chain(spec: MarkovSpec = MARKOV) -> np.ndarray:
  """The chain's token stream (int32), ``num_train + num_val + num_test`` long.

  Sampled by inverse CDF from one seeded generator, so the same spec gives
  the same stream on every machine.
  """
  if spec.vocab_size > len(_MARKOV_SYMBOLS):
    raise ValueError(f"vocab_size={spec.vocab_size}; allowed: at most "
                     f"{len(_MARKOV_SYMBOLS)}.")
  cdf = np.cumsum(markov_transitions(spec), axis=1)
  num_contexts, v = cdf.shape
  n = spec.num_train + spec.num_val + spec.num_test
  uniforms = np.random.default_rng([spec.seed, 1]).random(n)
  tokens = np.empty(n, np.int32)
  context = 0
  for t in range(n):
    s = min(int(np.searchsorted(cdf[context], uniforms[t], side="right")),
            v - 1)
    tokens[t] = s
    context = (context * v + s) % num_contexts
  return tokens


def _load_markov() -> Dataset:
  return _assemble_sequence("markov", markov_chain(MARKOV),
                            _MARKOV_SYMBOLS[:MARKOV.vocab_size])


def _load_local(name: str, path: str) -> Dataset:
  if SPECS[name].features == "tokens":
    return _assemble_text(name, path, _read_text(path))
  return _assemble(name, path, _load_npz(path))


def _load_from_tfds(name: str, data_dir: Optional[str]) -> Dataset:
  source = f"TFDS {name!r} (data_dir={data_dir!r})"
  if SPECS[name].features == "tokens":
    return _assemble_text(name, source, _load_tfds_text(name, data_dir))
  return _assemble(name, source, _load_tfds(name, data_dir))


def local_file_name(name: str) -> str:
  """The file ``name`` is read from in a data directory."""
  return TEXT_FILES.get(name, f"{name}.npz")


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: Optional[str], mnist1d_seed: int) -> Dataset:
  if name == "mnist1d":
    return _assemble(name, f"mnist1d generator (seed {mnist1d_seed})",
                     _generate_mnist1d(mnist1d_seed))
  if name == "markov":
    return _load_markov()
  tried = []
  if data_dir is not None:
    path = os.path.join(data_dir, local_file_name(name))
    if os.path.isfile(path):
      return _load_local(name, path)
    if not os.path.isdir(data_dir):
      tried.append(f"data_dir {data_dir!r} does not exist")
    else:
      tried.append(f"{path} not found")
  else:
    tried.append(f"no data_dir given and {DATA_DIR_ENV} is unset")
  try:
    return _load_from_tfds(name, data_dir)
  except DataFormatError:
    raise   # the data came but is wrong: not a "data not found"
  except ImportError:
    tried.append("tensorflow_datasets is not installed")
  except Exception as e:  # pylint: disable=broad-except
    tried.append(f"TFDS failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
  raise DataNotFoundError(_how_to_get(name, tried))


def load_dataset(name: str, data_dir: Optional[str] = None,
                 mnist1d_seed: int = 0) -> Dataset:
  """Loads ``name`` with the papers' train/validation/test splits.

  Args:
    name: one of ``KNOWN_DATASETS`` ('fashion_mnist', 'cifar10', 'mnist1d',
      'tiny_shakespeare', 'markov').
    data_dir: directory holding ``<name>.npz`` (``tiny_shakespeare.txt``
      for Tiny Shakespeare); defaults to the
      ``LR_META_DATA_DIR`` environment variable.
    mnist1d_seed: seed of the offline mnist1d generator (fixed by default).

  Returns:
    A ``Dataset`` of numpy arrays (host memory; put it on device once);
    for ``SEQUENCE_DATASETS`` each split is a stream of next-token pairs.

  Raises:
    ValueError: unknown name.
    DataFormatError: (a ``ValueError``) an unreadable file or arrays of the
      wrong format (see ``validate_arrays``); the message names the file.
    DataNotFoundError: no source could provide the data; the message says how
      to get it.
  """
  _check_name(name)
  if data_dir is None:
    data_dir = os.environ.get(DATA_DIR_ENV) or None
  return _load_cached(name, data_dir, mnist1d_seed)
