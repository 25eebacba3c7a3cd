"""Benchmark workloads: small frozen descriptions of one training problem.

A ``Workload`` fixes everything a method may not choose: data set and the
slices of it, model, base optimizer, batch size, number of steps and the
default initial learning rate (what the base optimizer runs at untuned and
where learned controllers start). Its ``split`` says whether controllers may
be trained on it (``'train'``) or only evaluated (``'heldout'``).

Suites group workloads: ``'tiny'`` (tests, seconds), ``'cpu'`` (the
benchmark on 2 CPU cores), ``'gpu'`` (the same questions at accelerator
scale) and ``'cpu_v1'``, ``'gpu_v1'`` (the two before their held-out sides
were renewed, kept to compare; ``FROZEN_SUITE_CONTROLLERS`` names the
controllers they are held out from). A suite may put a workload on another
side than its registered ``split`` (``SUITE_SPLITS``: in ``'cpu'`` the four
old held-out workloads are on the train side, because the generalist's
development looked at them). ``check_heldout_rules`` states what makes a
held-out side honest (``SUITE_RULES``: v2 for ``'cpu'`` and ``'gpu'``: at
least eight workloads users train, language models on held-out text among
them, against every shipped controller's training tasks) and is tested on
every suite.
"""

import dataclasses
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from lr_meta import tasks
from lr_meta.tasks.task import DEFAULT_DIVERGENCE_LOSS
from lr_meta.tasks.task import default_loss

TRAIN = "train"
HELDOUT = "heldout"
SPLITS = (TRAIN, HELDOUT)


@dataclasses.dataclass(frozen=True)
class Workload:
  """One training problem of the benchmark.

  Attributes:
    name: registry key.
    split: ``'train'`` (controllers may train on it) or ``'heldout'``.
    dataset, model, optimizer: names known to ``lr_meta.tasks``.
    batch_size: training batch size.
    num_steps: T, inner steps of every run.
    initial_lr: the default initial learning rate: the untuned base
      optimizer's LR and a learned controller's starting LR.
    model_kwargs, optimizer_kwargs: sorted ``(name, value)`` pairs.
    num_evals: validation points per run (curves; must divide ``num_steps``).
    num_train_examples, num_val_examples, num_test_examples: keep the first
      examples of each split (None: all of it).
    divergence_loss: a run whose loss exceeds it is diverged; it is the
      worst test loss of the scores.
    description: one line for the report.
    context_length: tokens per example of a sequence data set (None for
      data sets of examples; ``tasks.make_task``).
    loss: the task's objective (None: the model's, ``tasks.make_task``).
  """
  name: str
  split: str
  dataset: str
  model: str
  optimizer: str
  batch_size: int
  num_steps: int
  initial_lr: float
  model_kwargs: Tuple[Tuple[str, object], ...] = ()
  optimizer_kwargs: Tuple[Tuple[str, object], ...] = ()
  num_evals: int = 10
  num_train_examples: Optional[int] = None
  num_val_examples: Optional[int] = None
  num_test_examples: Optional[int] = None
  divergence_loss: float = DEFAULT_DIVERGENCE_LOSS
  description: str = ""
  context_length: Optional[int] = None
  loss: Optional[str] = None

  def __post_init__(self):
    if self.split not in SPLITS:
      raise ValueError(f"Workload {self.name!r}: split={self.split!r}; "
                       f"allowed: {SPLITS}.")
    for field in ("dataset", "model", "optimizer"):
      known = {"dataset": tasks.KNOWN_DATASETS, "model": tasks.KNOWN_MODELS,
               "optimizer": tasks.KNOWN_OPTIMIZERS}[field]
      if getattr(self, field) not in known:
        raise ValueError(f"Workload {self.name!r}: {field}="
                         f"{getattr(self, field)!r}; known: {known}.")
    if self.num_evals < 1 or self.num_steps % self.num_evals:
      raise ValueError(f"Workload {self.name!r}: num_evals={self.num_evals} "
                       f"must divide num_steps={self.num_steps}.")
    if not self.initial_lr > 0:
      raise ValueError(f"Workload {self.name!r}: initial_lr="
                       f"{self.initial_lr!r}; allowed: > 0.")

  @property
  def eval_every(self) -> int:
    return self.num_steps // self.num_evals

  @property
  def pairing(self) -> Tuple[str, str]:
    return (self.dataset, self.model)

  def make_task(self, data_dir: Optional[str] = None) -> tasks.Task:
    """The ``lr_meta.tasks.Task`` of this workload (data put on device)."""
    return tasks.make_task(
        self.dataset, self.model, dict(self.model_kwargs), self.optimizer,
        dict(self.optimizer_kwargs), batch_size=self.batch_size,
        num_train_examples=self.num_train_examples,
        num_val_examples=self.num_val_examples,
        num_test_examples=self.num_test_examples, data_dir=data_dir,
        divergence_loss=self.divergence_loss, loss=self.loss,
        context_length=self.context_length)

  def summary(self) -> str:
    kwargs = ", ".join(f"{k}={v}" for k, v in self.model_kwargs)
    model = f"{self.model}({kwargs})" if kwargs else self.model
    return (f"{self.dataset} {model}, {self.optimizer} lr0 "
            f"{self.initial_lr:g}, "
            f"batch {self.batch_size}, {self.num_steps} steps")


def _w(**kw) -> Workload:
  for key in ("model_kwargs", "optimizer_kwargs"):
    kw[key] = tuple(sorted(kw.get(key, {}).items()))
  return Workload(**kw)


# Default initial LRs: SGD 0.1, Adam 1e-3 (the usual defaults), momentum 0.01
# (SGD's 0.1 in effective step), except where a workload is a shipped
# controller's training task (its lr0). Conv nets on 2 CPU cores cost
# 15-40 ms a step at batch 32 (BUILD_NOTES, benchmark sizing): they get batch
# 32, 5 validation points on 1,000 examples and 2,000 test examples, so that
# a whole conv workload (~230 runs) stays near a quarter of an hour.
_CONV = dict(batch_size=32, num_evals=5, num_val_examples=1000,
             num_test_examples=2000)

WORKLOADS: Dict[str, Workload] = {w.name: w for w in [
    # -- tiny: tests (mnist1d is generated offline) ---------------------
    _w(name="tiny_mnist1d_mlp_sgd", split=TRAIN, dataset="mnist1d",
       model="mlp", model_kwargs={"hidden_sizes": (32,)}, optimizer="sgd",
       batch_size=32, num_steps=40, initial_lr=0.1, num_evals=4,
       num_train_examples=512, num_val_examples=200, num_test_examples=200,
       description="test-sized: mnist1d slice, MLP(32), SGD"),
    _w(name="tiny_mnist1d_mlp_adam", split=HELDOUT, dataset="mnist1d",
       model="mlp", model_kwargs={"hidden_sizes": (32,)}, optimizer="adam",
       batch_size=32, num_steps=80, initial_lr=1e-3, num_evals=4,
       num_train_examples=512, num_val_examples=200, num_test_examples=200,
       description="test-sized: mnist1d slice, MLP(32), Adam, 2x horizon"),
    # -- cpu: train side (SGD / momentum, <= 500 steps) ----------------
    _w(name="mnist1d_mlp_momentum", split=TRAIN, dataset="mnist1d",
       model="mlp", optimizer="momentum", batch_size=128, num_steps=300,
       initial_lr=0.1,
       description="the quickstart controller's training task"),
    _w(name="fmnist_mlp_sgd", split=TRAIN, dataset="fashion_mnist",
       model="mlp", optimizer="sgd", batch_size=128, num_steps=500,
       initial_lr=0.1, num_val_examples=2000,
       description="the progress controller's training task"),
    _w(name="fmnist_lenet5_sgd", split=TRAIN, dataset="fashion_mnist",
       model="lenet5", optimizer="sgd", num_steps=300, initial_lr=0.1,
       description="Xu 2019's Fashion-MNIST LeNet-5, CPU-sized", **_CONV),
    _w(name="cifar10_mlp_sgd", split=TRAIN, dataset="cifar10", model="mlp",
       optimizer="sgd", batch_size=64, num_steps=400, initial_lr=0.1,
       num_val_examples=2000, num_test_examples=5000,
       description="CIFAR-10 on the train side, as an MLP"),
    # -- cpu: held-out side (Adam, a new pairing, 2-4x the horizon) ----
    # Not mnist1d at 2,000 steps: 3,200 training examples are 80 epochs
    # there, test losses then rise while accuracies still improve (measured:
    # Prodigy's test loss 2.5x the cosine's at the best accuracy), so the
    # workload would score overfitting rather than optimisation.
    _w(name="fmnist_mlp_adam_long", split=HELDOUT, dataset="fashion_mnist",
       model="mlp", optimizer="adam", batch_size=128, num_steps=2000,
       initial_lr=1e-3, num_evals=20, num_val_examples=2000,
       description="Adam, 4x the longest training horizon"),
    _w(name="cifar10_mlp_adam", split=HELDOUT, dataset="cifar10",
       model="mlp", optimizer="adam", batch_size=64, num_steps=1000,
       initial_lr=1e-3, num_val_examples=2000, num_test_examples=5000,
       description="Adam, 2.5x the CIFAR-10 MLP's training horizon"),
    _w(name="cifar10_small_cnn_momentum", split=HELDOUT, dataset="cifar10",
       model="small_cnn", model_kwargs={"filters": (8, 16, 64)},
       optimizer="momentum", num_steps=300, initial_lr=0.01,
       description="new pairing: Daniel 2016's small CNN, never trained on",
       **_CONV),
    _w(name="fmnist_mlp2_momentum_long", split=HELDOUT,
       dataset="fashion_mnist", model="mlp",
       model_kwargs={"hidden_sizes": (256, 128)}, optimizer="momentum",
       batch_size=128, num_steps=1000, initial_lr=0.01,
       num_val_examples=2000,
       description="deeper MLP, momentum, 2x the longest training horizon"),
    # -- cpu (v2) train side: the kinds of the held-out side, elsewhere --
    # A sequence model on the training side's token source ('markov', never
    # the held-out text), a normalised residual net and AdamW, each with a
    # (data set, model, optimizer) no held-out workload has: what a
    # controller meant for the held-out side may be trained and selected on.
    _w(name="markov_transformer_adamw", split=TRAIN, dataset="markov",
       model="transformer",
       model_kwargs={"num_layers": 1, "num_heads": 2, "width": 32},
       context_length=32, optimizer="adamw",
       optimizer_kwargs={"weight_decay": 0.1}, batch_size=16,
       num_steps=500, initial_lr=1e-3, num_evals=5,
       num_val_examples=128, num_test_examples=256,
       description="transformer (1 layer, width 32, context 32) on the "
                   "Markov source, AdamW wd 0.1"),
    _w(name="markov_lstm_adam", split=TRAIN, dataset="markov",
       model="lstm", model_kwargs={"width": 64}, context_length=32,
       optimizer="adam", batch_size=16, num_steps=500, initial_lr=1e-3,
       num_evals=5, num_val_examples=128, num_test_examples=256,
       description="LSTM (width 64, context 32) on the Markov source, Adam"),
    _w(name="cifar10_resnet_batch_adamw", split=TRAIN, dataset="cifar10",
       model="resnet_norm", model_kwargs={"width": 8, "norm": "batch"},
       optimizer="adamw", optimizer_kwargs={"weight_decay": 0.01},
       num_steps=300, initial_lr=1e-3,
       description="pre-activation ResNet (width 8, batch norm), AdamW wd "
                   "0.01", **_CONV),
    # -- cpu (v2) held-out side: what users train, never trained on ----
    # Tiny Shakespeare is held-out text: no controller and no training-side
    # workload reads it (the training-side sequence source is 'markov').
    # AdamW's weight decay and clipping-free setup are optax's defaults
    # except the decay; default LRs: Adam/AdamW 1e-3, momentum 0.01.
    _w(name="shakespeare_transformer_adamw", split=HELDOUT,
       dataset="tiny_shakespeare", model="transformer",
       model_kwargs={"num_layers": 2, "num_heads": 4, "width": 64},
       context_length=64, optimizer="adamw",
       optimizer_kwargs={"weight_decay": 0.1}, batch_size=16,
       num_steps=1000, initial_lr=1e-3, num_evals=10,
       num_val_examples=128, num_test_examples=256,
       description="character transformer (2 layers, width 64, context "
                   "64), AdamW wd 0.1: the workload users run"),
    _w(name="shakespeare_transformer_adamw_long", split=HELDOUT,
       dataset="tiny_shakespeare", model="transformer",
       model_kwargs={"num_layers": 1, "num_heads": 2, "width": 64},
       context_length=32, optimizer="adamw",
       optimizer_kwargs={"weight_decay": 0.01}, batch_size=32,
       num_steps=2000, initial_lr=1e-3, num_evals=20,
       num_val_examples=256, num_test_examples=512,
       description="smaller transformer (1 layer, context 32), AdamW wd "
                   "0.01, 2x the longest training horizon"),
    _w(name="shakespeare_lstm_adam", split=HELDOUT,
       dataset="tiny_shakespeare", model="lstm",
       model_kwargs={"width": 128}, context_length=32, optimizer="adam",
       batch_size=16, num_steps=1000, initial_lr=1e-3, num_evals=10,
       num_val_examples=256, num_test_examples=512,
       description="character LSTM (width 128, context 32), Adam"),
    _w(name="fmnist_autoencoder_adam", split=HELDOUT,
       dataset="fashion_mnist", model="autoencoder",
       model_kwargs={"hidden_sizes": (256, 32)}, optimizer="adam",
       batch_size=128, num_steps=1000, initial_lr=1e-3, num_evals=10,
       num_val_examples=2000, num_test_examples=5000,
       description="MLP autoencoder (256, 32), mean squared error, Adam"),
    _w(name="cifar10_resnet_group_momentum", split=HELDOUT,
       dataset="cifar10", model="resnet_norm",
       model_kwargs={"width": 8, "norm": "group", "num_groups": 4},
       optimizer="momentum", num_steps=400, initial_lr=0.01,
       description="pre-activation ResNet (width 8, group norm), momentum",
       **_CONV),
    _w(name="fmnist_resnet_layer_adamw", split=HELDOUT,
       dataset="fashion_mnist", model="resnet_norm",
       model_kwargs={"width": 8, "norm": "layer"}, optimizer="adamw",
       optimizer_kwargs={"weight_decay": 0.05}, batch_size=32,
       num_steps=400, initial_lr=1e-3, num_evals=5, num_val_examples=1000,
       num_test_examples=2000,
       description="pre-activation ResNet (width 8, layer norm), AdamW wd "
                   "0.05"),
    _w(name="fmnist_gru_rows_rmsprop", split=HELDOUT,
       dataset="fashion_mnist", model="gru",
       model_kwargs={"width": 64, "output": "last"}, optimizer="rmsprop",
       batch_size=128, num_steps=1000, initial_lr=1e-3, num_evals=10,
       num_val_examples=2000, num_test_examples=5000,
       description="GRU reading the 28 image rows, RMSProp"),
    _w(name="cifar10_mlp_adamw_b256_long", split=HELDOUT,
       dataset="cifar10", model="mlp", model_kwargs={"hidden_sizes": (256,)},
       optimizer="adamw", optimizer_kwargs={"weight_decay": 0.01},
       batch_size=256, num_steps=2000, initial_lr=1e-3, num_evals=20,
       num_val_examples=2000, num_test_examples=5000,
       description="MLP(256), AdamW wd 0.01, batch 256, 2x the longest "
                   "training horizon"),
    # -- gpu: the same questions at accelerator scale ------------------
    _w(name="gpu_fmnist_lenet5_sgd", split=TRAIN, dataset="fashion_mnist",
       model="lenet5", optimizer="sgd", batch_size=128, num_steps=500,
       initial_lr=0.1, description="Xu 2019's Fashion-MNIST LeNet-5"),
    _w(name="gpu_cifar10_lenet5_sgd", split=TRAIN, dataset="cifar10",
       model="lenet5", optimizer="sgd", batch_size=128, num_steps=500,
       initial_lr=0.03, description="Xu 2019's CIFAR-10 LeNet-5"),
    _w(name="gpu_fmnist_mlp_sgd", split=TRAIN, dataset="fashion_mnist",
       model="mlp", optimizer="sgd", batch_size=128, num_steps=500,
       initial_lr=0.1, description="the progress controller's task"),
    _w(name="gpu_mnist1d_mlp_momentum", split=TRAIN, dataset="mnist1d",
       model="mlp", optimizer="momentum", batch_size=128, num_steps=500,
       initial_lr=0.1, description="the quickstart controller's task"),
    _w(name="gpu_cifar10_resnet18_adam", split=HELDOUT, dataset="cifar10",
       model="resnet18", optimizer="adam", batch_size=128, num_steps=2000,
       initial_lr=1e-3, num_evals=20,
       description="new pairing (ResNet-18, batch norm), Adam, 4x horizon"),
    _w(name="gpu_cifar10_small_cnn_momentum", split=HELDOUT,
       dataset="cifar10", model="small_cnn", optimizer="momentum",
       batch_size=128, num_steps=2000, initial_lr=0.01, num_evals=20,
       description="Daniel 2016's small CNN (20, 50, 500), momentum"),
    _w(name="gpu_fmnist_small_cnn_adam", split=HELDOUT,
       dataset="fashion_mnist", model="small_cnn", optimizer="adam",
       batch_size=128, num_steps=2000, initial_lr=1e-3, num_evals=20,
       description="new pairing (Fashion-MNIST small CNN), Adam"),
    _w(name="gpu_cifar10_lenet5_momentum_long", split=HELDOUT,
       dataset="cifar10", model="lenet5", optimizer="momentum",
       batch_size=128, num_steps=3000, initial_lr=0.01, num_evals=20,
       description="LeNet-5 at 6x the training horizon, momentum"),
    # The cpu suite's v2 held-out kinds at accelerator scale: what users
    # train, on the held-out text and losses no controller trained on.
    _w(name="gpu_shakespeare_transformer_adamw", split=HELDOUT,
       dataset="tiny_shakespeare", model="transformer",
       model_kwargs={"num_layers": 4, "num_heads": 4, "width": 128},
       context_length=64, optimizer="adamw",
       optimizer_kwargs={"weight_decay": 0.1}, batch_size=64,
       num_steps=2000, initial_lr=1e-3, num_evals=20,
       num_val_examples=1024, num_test_examples=2048,
       description="character transformer (4 layers, width 128, context "
                   "64: the notebook's model), AdamW wd 0.1"),
    _w(name="gpu_shakespeare_transformer_adamw_long", split=HELDOUT,
       dataset="tiny_shakespeare", model="transformer",
       model_kwargs={"num_layers": 2, "num_heads": 4, "width": 128},
       context_length=128, optimizer="adamw",
       optimizer_kwargs={"weight_decay": 0.01}, batch_size=64,
       num_steps=5000, initial_lr=1e-3, num_evals=25,
       num_val_examples=1024, num_test_examples=2048,
       description="character transformer (2 layers, context 128), AdamW "
                   "wd 0.01, 5x the longest training horizon"),
    _w(name="gpu_shakespeare_lstm_adam", split=HELDOUT,
       dataset="tiny_shakespeare", model="lstm",
       model_kwargs={"width": 256}, context_length=64, optimizer="adam",
       batch_size=64, num_steps=2000, initial_lr=1e-3, num_evals=20,
       num_val_examples=1024, num_test_examples=2048,
       description="character LSTM (width 256, context 64), Adam"),
    _w(name="gpu_fmnist_autoencoder_adam", split=HELDOUT,
       dataset="fashion_mnist", model="autoencoder",
       model_kwargs={"hidden_sizes": (512, 64)}, optimizer="adam",
       batch_size=256, num_steps=2000, initial_lr=1e-3, num_evals=20,
       description="MLP autoencoder (512, 64), mean squared error, Adam"),
    _w(name="gpu_fmnist_gru_rows_rmsprop", split=HELDOUT,
       dataset="fashion_mnist", model="gru",
       model_kwargs={"width": 128, "output": "last"}, optimizer="rmsprop",
       batch_size=256, num_steps=2000, initial_lr=1e-3, num_evals=20,
       description="GRU (width 128) reading the 28 image rows, RMSProp"),
    _w(name="gpu_cifar10_mlp_adamw_b256_long", split=HELDOUT,
       dataset="cifar10", model="mlp",
       model_kwargs={"hidden_sizes": (1024, 512)}, optimizer="adamw",
       optimizer_kwargs={"weight_decay": 0.01},
       batch_size=256, num_steps=4000, initial_lr=1e-3, num_evals=20,
       description="MLP(1024, 512), AdamW wd 0.01, batch 256, 4x the "
                   "longest training horizon"),
]}
KNOWN_WORKLOADS = tuple(WORKLOADS)

# The gpu suite before its held-out side was renewed, kept to compare.
_GPU_V1 = ("gpu_fmnist_lenet5_sgd", "gpu_cifar10_lenet5_sgd",
           "gpu_fmnist_mlp_sgd", "gpu_mnist1d_mlp_momentum",
           "gpu_cifar10_resnet18_adam", "gpu_cifar10_small_cnn_momentum",
           "gpu_fmnist_small_cnn_adam", "gpu_cifar10_lenet5_momentum_long")
# The cpu suite before its held-out side was renewed, kept to compare.
_CPU_V1 = ("mnist1d_mlp_momentum", "fmnist_mlp_sgd", "fmnist_lenet5_sgd",
           "cifar10_mlp_sgd", "fmnist_mlp_adam_long", "cifar10_mlp_adam",
           "cifar10_small_cnn_momentum", "fmnist_mlp2_momentum_long")
_CPU_TRAIN_V2 = ("markov_transformer_adamw", "markov_lstm_adam",
                 "cifar10_resnet_batch_adamw")
_CPU_HELDOUT = (
    "shakespeare_transformer_adamw", "shakespeare_transformer_adamw_long",
    "shakespeare_lstm_adam", "fmnist_autoencoder_adam",
    "cifar10_resnet_group_momentum", "fmnist_resnet_layer_adamw",
    "fmnist_gru_rows_rmsprop", "cifar10_mlp_adamw_b256_long")
SUITES: Dict[str, Tuple[str, ...]] = {
    "tiny": ("tiny_mnist1d_mlp_sgd", "tiny_mnist1d_mlp_adam"),
    # v2: cpu_v1's eight workloads are its train side (its four old
    # held-out ones were looked at while the generalist was developed:
    # 'seen', so they moved to the train side) with three of the held-out
    # side's kinds on other data (sequence models, normalisation, AdamW),
    # and eight new held-out ones.
    "cpu": _CPU_V1 + _CPU_TRAIN_V2 + _CPU_HELDOUT,
    "cpu_v1": _CPU_V1,
    # v2: the cpu suite's held-out kinds at accelerator scale; the SmallCNN
    # with momentum on CIFAR-10 is on the train side (the generalist trained
    # on that triple).
    "gpu": tuple(name for name in WORKLOADS if name.startswith("gpu_")),
    # The gpu suite before generalist v2: its held-out side was held out
    # from the controllers shipped then only.
    "gpu_v1": _GPU_V1,
}
# Workloads whose side differs in a suite from their registered ``split``.
SUITE_SPLITS: Dict[str, Dict[str, str]] = {
    "cpu": {"fmnist_mlp_adam_long": TRAIN, "cifar10_mlp_adam": TRAIN,
            "cifar10_small_cnn_momentum": TRAIN,
            "fmnist_mlp2_momentum_long": TRAIN},
    "gpu": {"gpu_cifar10_small_cnn_momentum": TRAIN},
}
# Which held-out rules (``check_heldout_rules``) a suite must satisfy.
SUITE_RULES = {"tiny": "v1", "cpu": "v2", "cpu_v1": "v1", "gpu": "v2",
               "gpu_v1": "v1"}
# The shipped controllers a frozen suite's held-out side was built against.
# A later controller trained on its held-out tasks (generalist v2 trained on
# the old held-out workloads, now the cpu suite's train side) is scored
# there but flagged in the report (``trained_on_heldout``).
FROZEN_SUITE_CONTROLLERS: Dict[str, Tuple[str, ...]] = {
    name: ("cifar10_lenet_xu2019_cpu", "fmnist_lenet_xu2019_cpu",
           "fmnist_mlp_xu2019_progress_cpu", "generalist_v1",
           "mnist1d_mlp_quickstart")
    for name in ("cpu_v1", "gpu_v1")}
KNOWN_SUITES = tuple(SUITES)


def get_workload(name: str) -> Workload:
  """The registered workload ``name``; unknown names list the known ones."""
  if name not in WORKLOADS:
    raise ValueError(f"Unknown workload {name!r}; known workloads: "
                     f"{', '.join(KNOWN_WORKLOADS)}.")
  return WORKLOADS[name]


def get_suite(name: str) -> Tuple[Workload, ...]:
  """The workloads of suite ``name``, in order."""
  if name not in SUITES:
    raise ValueError(f"Unknown suite {name!r}; known suites: "
                     f"{', '.join(KNOWN_SUITES)}.")
  sides = SUITE_SPLITS.get(name, {})
  return tuple(dataclasses.replace(WORKLOADS[n], split=sides[n])
               if n in sides else WORKLOADS[n] for n in SUITES[name])


def suite_workloads(suite: str,
                    names: Optional[Sequence[str]] = None
                    ) -> Tuple[Workload, ...]:
  """The workloads of ``suite``, or only ``names`` of them (in suite order)."""
  chosen = get_suite(suite)
  if not names:
    return chosen
  known = [w.name for w in chosen]
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f"Workloads {unknown} are not in suite {suite!r}; its "
                     f"workloads: {', '.join(known)}.")
  return tuple(w for w in chosen if w.name in set(names))


def select(workloads: Iterable[Workload], split: str) -> Tuple[Workload, ...]:
  """The workloads of one side (``'train'`` or ``'heldout'``)."""
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; allowed: {SPLITS}.")
  return tuple(w for w in workloads if w.split == split)


def train_side(suite: str, names: Optional[Sequence[str]] = None
               ) -> Tuple[Workload, ...]:
  """The train workloads of ``suite`` (only ``names`` of them if given),
  for work that must never read the held-out side (calibration, a
  controller's development); ValueError naming a held-out one."""
  train = select(suite_workloads(suite, names), TRAIN)
  heldout = sorted(set(names or ()) - {w.name for w in train})
  if heldout:
    raise ValueError(f"workloads {heldout} are held out in suite {suite!r}; "
                     "allowed: its train workloads "
                     f"{[w.name for w in select(get_suite(suite), TRAIN)]}.")
  return train


class TrainingTask(NamedTuple):
  """What a controller was trained on, for the held-out rules."""
  dataset: str
  model: str
  optimizer: str
  num_steps: int


def training_tasks(spec) -> Tuple[TrainingTask, ...]:
  """Every training task recorded in a controller's ``ControllerSpec``.

  A controller trained over a task distribution (its ``spec.config`` holds
  ``distribution``: ``combinations`` of ``[dataset, model, optimizer, ...]``
  and ``num_steps_range``) gives one task per combination, each at the
  longest horizon drawn; any other controller its one ``training_task``.
  """
  dist = spec.config.get("distribution")
  if not dist:
    return (training_task(spec),)
  missing = [k for k in ("combinations", "num_steps_range") if k not in dist]
  if missing:
    raise ValueError(f"controller {spec.name!r}: its spec.config."
                     f"distribution lacks {missing}; cannot tell what it was "
                     "trained on.")
  longest = int(dist["num_steps_range"][1])
  return tuple(TrainingTask(c[0], c[1], c[2], longest)
               for c in dist["combinations"])


def training_task(spec) -> TrainingTask:
  """The training task recorded in a controller's ``ControllerSpec``."""
  task = spec.config.get("task", {})
  env = spec.config.get("env", {})
  missing = [k for k, d in (("dataset", task), ("model", task),
                            ("optimizer", task), ("num_decisions", env))
             if k not in d]
  if missing:
    raise ValueError(f"controller {spec.name!r}: its spec.config lacks "
                     f"{missing}; cannot tell what it was trained on.")
  return TrainingTask(task["dataset"], task["model"], task["optimizer"],
                      int(env["num_decisions"])
                      * spec.observation_spec.steps_per_decision)


# The v2 held-out side (suite 'cpu'): what users train, far enough away.
HELDOUT_TEXT = "tiny_shakespeare"
MIN_HELDOUT_V2 = 8
RECURRENT_MODELS = ("rnn", "gru", "lstm")
NORMALIZED_RESIDUAL_MODELS = ("resnet_norm", "resnet18")


def check_heldout_rules(workloads: Iterable[Workload],
                        trained_on: Iterable[TrainingTask] = (),
                        rules: str = "v1") -> List[str]:
  """What keeps the held-out side of a suite honest; returns the violations.

  Training tasks are the train side of the suite and ``trained_on`` (every
  shipped controller's ``training_tasks``).

  ``rules='v1'``: the held-out side holds at least one (data set, model)
  pairing and a base optimizer (Adam) never trained on, and a horizon at
  least twice the longest training horizon.

  ``rules='v2'`` (suite 'cpu', ``SUITE_RULES``): at least 8 held-out
  workloads, none of whose (data set, model, optimizer) was trained on;
  no training task on the held-out text (Tiny Shakespeare); among them at
  least 2 transformer language models on that text with AdamW, 1
  non-classification loss, 1 recurrent model, 1 residual net with
  normalization, 2 at >= 2x the longest horizon any controller of
  ``trained_on`` trained on (the suite's train side when none is given),
  AdamW with weight decay, and a batch size of 256.
  """
  workloads, trained_on = tuple(workloads), tuple(trained_on)
  train = [TrainingTask(w.dataset, w.model, w.optimizer, w.num_steps)
           for w in select(workloads, TRAIN)] + list(trained_on)
  heldout = select(workloads, HELDOUT)
  if not heldout:
    return ["no held-out workload"]
  if rules not in ("v1", "v2"):
    raise ValueError(f"rules={rules!r}; allowed: 'v1', 'v2'.")
  longest = max((t.num_steps for t in train), default=0)
  if rules == "v2":
    # The horizon rule is against what controllers were trained on; the
    # suite's train side may hold long runs (its old held-out workloads).
    shipped = [t.num_steps for t in trained_on]
    return _v2_problems(heldout, train, max(shipped, default=longest))
  problems = []
  seen_pairings = {(t.dataset, t.model) for t in train}
  if all(w.pairing in seen_pairings for w in heldout):
    problems.append("every held-out (dataset, model) pairing was trained on")
  seen_optimizers = {t.optimizer for t in train}
  if "adam" in seen_optimizers or not any(w.optimizer == "adam"
                                          for w in heldout):
    problems.append("Adam must be a held-out-only base optimizer")
  if max(w.num_steps for w in heldout) < 2 * longest:
    problems.append(f"no held-out horizon >= 2 x {longest} steps (the "
                    f"longest training horizon)")
  return problems


def trained_on_heldout(heldout: Iterable[Workload],
                       trained_on: Iterable[TrainingTask]) -> List[str]:
  """The held-out workloads whose (data set, model, optimizer) a training
  task has, and training tasks on the held-out text: what makes a held-out
  score not a transfer result."""
  trained_on = tuple(trained_on)
  trained = {(t.dataset, t.model, t.optimizer) for t in trained_on}
  problems = [f"held-out {w.name!r}: ({w.dataset}, {w.model}, "
              f"{w.optimizer}) was trained on" for w in heldout
              if (w.dataset, w.model, w.optimizer) in trained]
  on_text = sorted({f"{t.dataset}/{t.model}/{t.optimizer}" for t in trained_on
                    if t.dataset == HELDOUT_TEXT})
  if on_text:
    problems.append(f"training tasks read the held-out text {HELDOUT_TEXT}: "
                    f"{on_text}")
  return problems


def _v2_problems(heldout, train, longest) -> List[str]:
  problems = []
  if len(heldout) < MIN_HELDOUT_V2:
    problems.append(f"{len(heldout)} held-out workloads; at least "
                    f"{MIN_HELDOUT_V2} needed")
  problems += trained_on_heldout(heldout, train)

  def count(pred):
    return sum(1 for w in heldout if pred(w))

  def decay(w):
    return dict(w.optimizer_kwargs).get("weight_decay", 0) > 0

  wanted = [
      (2, "transformer language models on Tiny Shakespeare with AdamW",
       lambda w: (w.dataset, w.model, w.optimizer) == (
           HELDOUT_TEXT, "transformer", "adamw")),
      (1, "non-classification losses", lambda w: (
          w.loss or default_loss(w.model)) != "cross_entropy"),
      (1, "recurrent models", lambda w: w.model in RECURRENT_MODELS),
      (1, "residual nets with normalization",
       lambda w: w.model in NORMALIZED_RESIDUAL_MODELS),
      (2, f"horizons >= 2 x {longest} steps (the longest training horizon)",
       lambda w: w.num_steps >= 2 * longest),
      (1, "AdamW with weight decay", lambda w: w.optimizer == "adamw"
       and decay(w)),
      (1, "batch size 256", lambda w: w.batch_size >= 256),
  ]
  for need, what, pred in wanted:
    have = count(pred)
    if have < need:
      problems.append(f"{have} held-out {what}; at least {need} needed")
  return problems
