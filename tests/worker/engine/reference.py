"""What the engine's tests (and bench/train_speed.py) check it with, kept out of the production modules:
one model's equations as training runs them, an echo check on fresh bits, a SavedModel written to disk."""

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from worker.engine.export import EchoModel
from worker.engine.forward import per_model_matmul
from worker.engine.group_model import stacked_states
from worker.engine.results import echo_score, echo_sequences


def cell_states(W: tf.Tensor, b: tf.Tensor, x: tf.Tensor, state: tf.Tensor) -> tf.Tensor:
    """Run tanh(concat(x_t, state) · W + b) over a window, as training does (the group of one); [batch, T, S]."""
    return stacked_states(W[None], b[None], x[None], state[None])[0]


def logits_of(W2: tf.Tensor, b2: tf.Tensor, states: tf.Tensor) -> tf.Tensor:
    """The fully connected layer from every state to the classes, as training computes it."""
    return per_model_matmul(states[None], W2[None])[0] + b2


def echo_accuracy(forward: Callable, rng: np.random.Generator, echo_step: int) -> float:
    """Share of echoed bits right on fresh series, at positions ≥ echo_step."""
    x = echo_sequences(rng)
    return echo_score(forward(x).numpy(), x, echo_step)


def save(model: EchoModel, path: str) -> None:
    """Write the module as a SavedModel with its serving signature."""
    tf.saved_model.save(model, path, signatures={"serving_default": model.__call__})
