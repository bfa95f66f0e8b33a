"""What a Keras user writes for the echo RNN: a stateful SimpleRNN trained with model.fit per epoch."""

import keras
import numpy as np

from contract.params import TrainingParams


def build(params: TrainingParams, seed: int) -> keras.Model:
    """Stateful SimpleRNN → Dense softmax, Adagrad(lr, initial accumulator 0.1), sparse cross-entropy."""
    keras.utils.set_random_seed(seed)
    p = params
    model = keras.Sequential(
        [
            keras.Input(batch_shape=(p.batch_size, p.truncated_backprop_length, 1)),
            keras.layers.SimpleRNN(p.state_size, activation="tanh", stateful=True, return_sequences=True, name="rnn"),
            keras.layers.Dense(p.num_classes, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adagrad(p.learning_rate, initial_accumulator_value=0.1),
        loss="sparse_categorical_crossentropy",
    )
    return model


def arrange(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[steps, batch, T] windows as Keras samples, window-major, so batch w row b continues batch w-1 row b."""
    steps, batch, width = xs.shape
    x = xs.reshape(steps * batch, width, 1).astype(np.float32)
    y = ys.reshape(steps * batch, width)
    return x, y


def run_epoch(model: keras.Model, params: TrainingParams, xs: np.ndarray, ys: np.ndarray) -> float:
    """One epoch: reset the RNN state, then fit once over the windows in order; the epoch's mean loss."""
    model.get_layer("rnn").reset_states()
    x, y = arrange(xs, ys)
    history = model.fit(x, y, batch_size=params.batch_size, shuffle=False, epochs=1, verbose=0)
    return float(history.history["loss"][-1])
