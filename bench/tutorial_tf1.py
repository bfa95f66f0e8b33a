"""The tutorial's own TF1 program (Hallström 2016), rebuilt with tf.compat.v1 as the seed reference.

The graph, the per-step unstack/concat/matmul/tanh, the per-step logits, softmax and cross-entropy,
the AdagradOptimizer and the one session.run with a feed_dict per window are as published; only the
API spellings of 2016 (tf.unpack, tf.concat(1, ...), positional cross-entropy arguments) are updated.
The live matplotlib plotting of the original is left out, which only flatters the reference.
"""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams


@dataclass
class TutorialProgram:
    """The tutorial's graph, its session and the tensors session.run feeds and fetches."""

    params: TrainingParams
    graph: tf.Graph
    session: tf.compat.v1.Session
    batchX_placeholder: tf.Tensor
    batchY_placeholder: tf.Tensor
    init_state: tf.Tensor
    total_loss: tf.Tensor
    train_step: tf.Operation
    current_state: tf.Tensor
    predictions_series: list[tf.Tensor]
    variables: dict[str, tf.Variable]


def generate_data(rng: np.random.Generator, params: TrainingParams) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's generateData: random bits, their echo, reshaped to batch_size rows."""
    x = np.array(rng.choice(2, params.total_series_length, p=[0.5, 0.5]))
    y = np.roll(x, params.echo_step)
    y[0 : params.echo_step] = 0
    cols = params.total_series_length // params.batch_size  # the tutorial needs an exact reshape
    x = x[: params.batch_size * cols].reshape((params.batch_size, -1))
    y = y[: params.batch_size * cols].reshape((params.batch_size, -1))
    return x, y


def build(params: TrainingParams, init: dict[str, np.ndarray]) -> TutorialProgram:
    """The tutorial's graph in a graph of its own (eager stays on elsewhere), with an open session."""
    p = params
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        batchX_placeholder = v1.placeholder(tf.float32, [p.batch_size, p.truncated_backprop_length])
        batchY_placeholder = v1.placeholder(tf.int32, [p.batch_size, p.truncated_backprop_length])
        init_state = v1.placeholder(tf.float32, [p.batch_size, p.state_size])

        W = tf.Variable(init["W"], dtype=tf.float32)
        b = tf.Variable(init["b"], dtype=tf.float32)
        W2 = tf.Variable(init["W2"], dtype=tf.float32)
        b2 = tf.Variable(init["b2"], dtype=tf.float32)

        # Unpack columns
        inputs_series = tf.unstack(batchX_placeholder, axis=1)
        labels_series = tf.unstack(batchY_placeholder, axis=1)

        # Forward pass
        current_state = init_state
        states_series = []
        for current_input in inputs_series:
            current_input = tf.reshape(current_input, [p.batch_size, 1])
            input_and_state_concatenated = tf.concat([current_input, current_state], 1)
            next_state = tf.tanh(tf.matmul(input_and_state_concatenated, W) + b)
            states_series.append(next_state)
            current_state = next_state

        logits_series = [tf.matmul(state, W2) + b2 for state in states_series]
        predictions_series = [tf.nn.softmax(logits) for logits in logits_series]
        losses = [
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            for logits, labels in zip(logits_series, labels_series)
        ]
        total_loss = tf.reduce_mean(losses)
        train_step = v1.train.AdagradOptimizer(p.learning_rate).minimize(total_loss)

        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    return TutorialProgram(
        p,
        graph,
        session,
        batchX_placeholder,
        batchY_placeholder,
        init_state,
        total_loss,
        train_step,
        current_state,
        predictions_series,
        {"W": W, "b": b, "W2": W2, "b2": b2},
    )


def run_epoch(program: TutorialProgram, x: np.ndarray, y: np.ndarray) -> list[float]:
    """One epoch of the tutorial's loop: a session.run per window, the state fed back as a value."""
    p = program.params
    num_batches = p.total_series_length // p.batch_size // p.truncated_backprop_length
    _current_state = np.zeros((p.batch_size, p.state_size))
    loss_list = []
    for batch_idx in range(num_batches):
        start_idx = batch_idx * p.truncated_backprop_length
        end_idx = start_idx + p.truncated_backprop_length
        batchX = x[:, start_idx:end_idx]
        batchY = y[:, start_idx:end_idx]
        _total_loss, _train_step, _current_state, _predictions_series = program.session.run(
            [program.total_loss, program.train_step, program.current_state, program.predictions_series],
            feed_dict={
                program.batchX_placeholder: batchX,
                program.batchY_placeholder: batchY,
                program.init_state: _current_state,
            },
        )
        loss_list.append(_total_loss)
    return loss_list


def weight_values(program: TutorialProgram) -> dict[str, np.ndarray]:
    """The program's current weights as NumPy arrays."""
    return program.session.run(program.variables)
