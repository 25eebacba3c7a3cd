"""Xu et al. 2019's official per-step computation, transcribed to numpy.

A reference for the tests of the official protocol
(``lr_meta.features.xu_protocol``), written from a reading of the official
TF1 code (google-research, ``adaptive_learning_rate_tuner/
learn_adaptive_learning_rate.py``), not from lr_meta. What each piece
transcribes:

* ``OfficialObservation``: the body of the training loop after its
  ``sess.run``: ``diff_prediction = prediction - prev_prediction``; the two
  log-variance EMAs with decay 0.8 that start at the first value through the
  ``ema == 0`` sentinel (the first value without the 1e-10, later ones with
  it); ``new_observation = [valid_loss, prediction_log_var_ema,
  prediction_change_log_var_ema, loss, mean_w1, var_w1, mean_w2, var_w2,
  action]`` where ``action`` is the raw learning rate; reward ``2.0 -
  valid_loss`` (``reward_baseline='Fixed'``). The observation before the
  first step is ``init_observation``, nine ones; ``prev_prediction`` starts
  as ``np.random.rand(batch_size, 10)`` (passed in here).
* ``choose_action_lr``: ``AdaptiveTuner.choose_action`` after the sample:
  clip to [-0.2, 0.5], ``(a - 0.15) * 0.1 + 1`` times the LR.
* ``dataset_batch_indices``: ``Dataset.from_tensor_slices(...).repeat()
  .batch(batch_size)``: batch ``t`` is examples ``t*B .. t*B+B-1`` of the
  endlessly repeated training set (no shuffle).
* ``official_param_shapes``: the kernel/bias shapes of ``build_mlp_model``
  and ``build_cnn_model`` (``tf.layers.dense``/``conv2d`` with ``'same'``
  padding, 2x2 max pools).

Timing (not a formula, so not transcribed): the official loop chooses the
action first and then fetches the step's loss, predictions and validation
loss in the same ``sess.run`` as the update; lr_meta observes at the
decision, before acting. The tests therefore feed this reference the values
at lr_meta's measurement points and compare what it computes from them.
"""

import numpy as np

LOG_BASE = 1e-10
EXP_DECAY = 0.8
FIXED_BASELINE = 2.0
CLIP_LOW, CLIP_HIGH, LR_SHIFT, LR_SCALE = -0.2, 0.5, 0.15, 0.1
INIT_OBSERVATION = np.ones(9)


class OfficialObservation:
  """The official loop's feature state and its per-step observation."""

  def __init__(self, prev_prediction: np.ndarray):
    self.prev_prediction = np.asarray(prev_prediction, np.float64)
    self.prediction_log_var_ema = 0
    self.prediction_change_log_var_ema = 0
    self.observation = INIT_OBSERVATION.copy()

  def step(self, prediction_value, valid_loss_value, loss_value, w1, w2,
           learning_rate):
    """One step's fetched values -> ``(new_observation, reward)``."""
    prediction_value = np.asarray(prediction_value, np.float64)
    w1 = np.asarray(w1, np.float64)
    w2 = np.asarray(w2, np.float64)
    diff_prediction = prediction_value - self.prev_prediction
    if self.prediction_log_var_ema == 0:
      self.prediction_log_var_ema = np.log(np.var(prediction_value))
    else:
      self.prediction_log_var_ema = (
          EXP_DECAY * self.prediction_log_var_ema + (1 - EXP_DECAY)
          * np.log(np.var(prediction_value) + LOG_BASE))
    if self.prediction_change_log_var_ema == 0:
      self.prediction_change_log_var_ema = np.log(np.var(diff_prediction))
    else:
      self.prediction_change_log_var_ema = (
          EXP_DECAY * self.prediction_change_log_var_ema + (1 - EXP_DECAY)
          * np.log(np.var(diff_prediction) + LOG_BASE))
    # tf.nn.moments(w, axes=[0, 1]): mean and (ddof 0) variance of all.
    new_observation = np.array([
        float(valid_loss_value), self.prediction_log_var_ema,
        self.prediction_change_log_var_ema, float(loss_value), w1.mean(),
        w1.var(), w2.mean(), w2.var(), float(learning_rate)])
    reward = FIXED_BASELINE - float(valid_loss_value)
    self.observation = new_observation
    self.prev_prediction = prediction_value
    return new_observation, reward


def choose_action_lr(learning_rate: float, sampled_action: float) -> float:
  """The LR after one ``choose_action`` with the given Gaussian sample."""
  multiplier = np.clip(sampled_action, CLIP_LOW, CLIP_HIGH)
  multiplier = (multiplier - LR_SHIFT) * LR_SCALE + 1
  return learning_rate * multiplier


def dataset_batch_indices(step: int, batch_size: int,
                          num_examples: int) -> np.ndarray:
  """Example indices of batch ``step`` of ``repeat().batch(batch_size)``."""
  return np.arange(step * batch_size, (step + 1) * batch_size) % num_examples


def official_param_shapes(trainee_model: str, input_shape=(28, 28, 1),
                          num_classes: int = 10) -> dict:
  """``{layer: (kernel shape, bias shape)}`` of the official trainees."""
  if trainee_model == "mlp":
    num_pixels = int(np.prod(input_shape))
    return {"w1": ((num_pixels, 128), (128,)),
            "w2": ((128, num_classes), (num_classes,))}
  if trainee_model == "cnn":
    height, width, channels = input_shape
    # Two 'same' convs keep the map; two 2x2 pools halve it twice.
    final_input_dim = (height // 4) * (width // 4) * 64
    return {"conv1": ((5, 5, channels, 32), (32,)),
            "conv2": ((5, 5, 32, 64), (64,)),
            "w1": ((final_input_dim, 512), (512,)),
            "w2": ((512, num_classes), (num_classes,))}
  raise ValueError(f"trainee_model={trainee_model!r}; allowed: 'mlp', 'cnn'.")


def param_count(shapes: dict) -> int:
  return int(sum(np.prod(k) + np.prod(b) for k, b in shapes.values()))
