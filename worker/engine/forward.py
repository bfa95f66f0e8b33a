"""Forward passes from a zero state: one model's (serving, evaluation) and K stacked models' (echo checks)."""

from collections.abc import Callable

import tensorflow as tf

WEIGHT_NAMES = ("W", "b", "W2", "b2")
# Per model and product, up to this many multiplications a broadcast multiply and sum beats a matmul
# on the CPU (XLA fuses it; a matmul call per tiny product costs more than its arithmetic); above, matmul.
BROADCAST_MAX = 4096


def per_model_matmul(a: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """Each model's a · w: a [K, ..., S] with w [K, S, N] to [K, ..., N]."""
    models, inner, outer = w.shape
    middle = a.shape[1:-1]
    if middle.num_elements() * inner * outer <= BROADCAST_MAX:
        w = tf.reshape(w, [models] + [1] * len(middle) + [inner, outer])
        return tf.reduce_sum(a[..., None] * w, axis=-2)
    return tf.reshape(tf.matmul(tf.reshape(a, [models, -1, inner]), w), [models, *middle.as_list(), outer])


def make_forward(weights: list[tf.Variable] | list[tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """A compiled forward pass from a zero state: [B, L] bits to [B, L, C] probabilities."""

    @tf.function(jit_compile=True)
    def forward(x: tf.Tensor) -> tf.Tensor:
        W, b, W2, b2 = weights
        steps = tf.transpose(tf.cast(x, tf.float32))[:, :, None] * W[:1]  # [L, B, S]
        zero = tf.zeros([tf.shape(x)[0], W.shape[1]])

        def step(state: tf.Tensor, inp: tf.Tensor) -> tf.Tensor:
            return tf.tanh(inp + tf.matmul(state, W[1:]) + b)

        states = tf.scan(step, steps, initializer=zero)  # [L, B, S]
        logits = tf.einsum("lbs,sc->blc", states, W2) + b2
        return tf.nn.softmax(logits)

    return forward


@tf.function(jit_compile=True)
def stacked_probabilities(W: tf.Tensor, b: tf.Tensor, W2: tf.Tensor, b2: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """K models' forward passes from a zero state, weights [K, ...]: bits [K, R, L] to probabilities [K, R, L, C]."""
    inputs = tf.transpose(tf.cast(x, tf.float32), [2, 0, 1])[..., None] * W[None, :, None, 0]  # [L, K, R, S]
    states = tf.scan(
        lambda state, inp: tf.tanh(inp + per_model_matmul(state, W[:, 1:]) + b),
        inputs,
        initializer=tf.zeros_like(inputs[0]),
    )  # [L, K, R, S]
    return tf.nn.softmax(per_model_matmul(tf.transpose(states, [1, 2, 0, 3]), W2) + b2[:, None])
