"""The tutorial's network: initial weights and its equations for one model (training runs them as a group of one)."""

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams
from worker.engine.forward import WEIGHT_NAMES, make_forward, per_model_matmul
from worker.engine.group_model import ADAGRAD_INITIAL_ACCUMULATOR, stacked_states

__all__ = ["ADAGRAD_INITIAL_ACCUMULATOR", "WEIGHT_NAMES", "cell_states", "initial_weights", "logits_of", "make_forward"]


def initial_weights(rng: np.random.Generator, params: TrainingParams) -> dict[str, np.ndarray]:
    """Biases zero; W and W2 uniform in [0, 1) as the tutorial's tf.random_uniform, or Glorot-uniform (params.init)."""
    s, c = params.state_size, params.num_classes
    draw = _glorot if params.init == "glorot" else (lambda r, shape: r.random(shape, dtype=np.float32))
    return {
        "W": draw(rng, (1 + s, s)),
        "b": np.zeros((1, s), np.float32),
        "W2": draw(rng, (s, c)),
        "b2": np.zeros((1, c), np.float32),
    }


def _glorot(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Uniform in ±sqrt(6 / (fan_in + fan_out)): zero-centred, so tanh units start in their linear range."""
    limit = np.sqrt(6.0 / sum(shape))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def cell_states(W: tf.Tensor, b: tf.Tensor, x: tf.Tensor, state: tf.Tensor) -> tf.Tensor:
    """Run tanh(concat(x_t, state) · W + b) over a window, as training does (the group of one); [batch, T, S]."""
    return stacked_states(W[None], b[None], x[None], state[None])[0]


def logits_of(W2: tf.Tensor, b2: tf.Tensor, states: tf.Tensor) -> tf.Tensor:
    """The fully connected layer from every state to the classes, as training computes it."""
    return per_model_matmul(states[None], W2[None])[0] + b2
