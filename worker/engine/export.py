"""The trained network as a SavedModel: variable-length bit sequences in, P(bit = 1) out."""

import threading

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams
from worker.engine.forward import WEIGHT_NAMES, make_forward
from worker.engine.kept import kept
from worker.engine.model import initial_weights

MIN_BUCKET = 16
SEQUENCES = tf.TensorSpec([None, None], tf.int32, name="sequences")
TRACED_KEPT = 4  # shapes whose traced module a worker process keeps
_traced: dict[tuple[int, int], "EchoModel"] = {}
_tracing = threading.Lock()


def bucket(n: tf.Tensor) -> tf.Tensor:
    """The power of two at or above n (at least MIN_BUCKET), so XLA compiles a few shapes only."""
    n = tf.maximum(n, MIN_BUCKET)
    return tf.cast(2 ** tf.math.ceil(tf.math.log(tf.cast(n, tf.float64)) / np.log(2.0)), tf.int32)


class EchoModel(tf.Module):
    """Serving module; the RNN is causal, so right-padding to a bucket leaves earlier outputs exact.

    `__call__` takes any batch and length (MLflow's pyfunc and `mlflow models serve` call it).
    `forward` is the bare compiled pass: XLA compiles it once per input shape, so a caller that
    pads to buckets itself (the API does, in NumPy) skips the padding ops and their overhead.
    """

    def __init__(self, weights: dict[str, np.ndarray], echo_step: int):
        super().__init__(name="echo_rnn")
        self.weights = [tf.Variable(weights[n], trainable=False, name=n) for n in WEIGHT_NAMES]
        self.echo_step = tf.Variable(echo_step, trainable=False, name="echo_step")
        probabilities = make_forward(self.weights)
        self.forward = tf.function(
            lambda sequences: probabilities(sequences)[:, :, 1], input_signature=[SEQUENCES], jit_compile=True
        )

    @tf.function(input_signature=[SEQUENCES])
    def __call__(self, sequences: tf.Tensor) -> tf.Tensor:
        """P(bit = 1) at each position of each sequence, from a zero state: [batch, length]."""
        rows, length = tf.shape(sequences)[0], tf.shape(sequences)[1]
        padded = tf.pad(sequences, [[0, bucket(rows) - rows], [0, bucket(length) - length]])
        return self.forward(padded)[:rows, :length]

    def set_weights(self, weights: dict[str, np.ndarray]) -> "EchoModel":
        """Take trained weights into this (already traced) module."""
        for variable, name in zip(self.weights, WEIGHT_NAMES):
            variable.assign(weights[name])
        return self


def build(weights: dict[str, np.ndarray], echo_step: int) -> EchoModel:
    """A serving module holding copies of the trained weights."""
    return EchoModel(weights, echo_step)


def traced(params: TrainingParams) -> EchoModel:
    """A module of the job's shapes with its functions traced, for set_weights once training ends.

    Tracing, and a module's first SavedModel, are most of the time one takes to write: done while
    the job trains, and kept for the process's next job of the same shapes (jobs run one at a
    time per process), they are not part of the wait between the last epoch and the registered model.
    """
    key = (params.state_size, params.num_classes)
    with _tracing:  # a failed job's tracing thread may still run beside the next job's
        module = kept(_traced, key, lambda: _trace(params), TRACED_KEPT)
        module.echo_step.assign(params.echo_step)
        return module


def _trace(params: TrainingParams) -> EchoModel:
    module = build(initial_weights(np.random.default_rng(0), params), params.echo_step)
    module.__call__.get_concrete_function()
    module.forward.get_concrete_function()
    return module
