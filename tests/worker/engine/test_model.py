"""The model's equations against a small NumPy implementation of the same math, in float64."""

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams
from tests.worker.engine.one_model import Trainer
from tests.worker.engine.reference import cell_states, logits_of
from worker.engine.forward import WEIGHT_NAMES, make_forward
from worker.engine.group_model import ADAGRAD_INITIAL_ACCUMULATOR
from worker.engine.model import initial_weights

# Not the defaults, so a mixed-up axis shows: 3 rows, windows of 6, 4 units, 3 classes.
PARAMS = TrainingParams(
    total_series_length=36,
    batch_size=3,
    truncated_backprop_length=6,
    state_size=4,
    num_classes=3,
    echo_step=2,
    learning_rate=0.3,
)
TOL = dict(rtol=1e-5, atol=1e-5)


def fixed_case(seed: int = 0):
    """Weights with nonzero biases, one window of bits and labels, and a nonzero incoming state."""
    rng = np.random.default_rng(seed)
    p = PARAMS
    weights = {
        "W": rng.uniform(-1, 1, (1 + p.state_size, p.state_size)).astype(np.float32),
        "b": rng.uniform(-0.5, 0.5, (1, p.state_size)).astype(np.float32),
        "W2": rng.uniform(-1, 1, (p.state_size, p.num_classes)).astype(np.float32),
        "b2": rng.uniform(-0.5, 0.5, (1, p.num_classes)).astype(np.float32),
    }
    x = rng.integers(0, 2, (p.batch_size, p.truncated_backprop_length), dtype=np.int32)
    y = rng.integers(0, p.num_classes, (p.batch_size, p.truncated_backprop_length), dtype=np.int32)
    state = rng.uniform(-0.9, 0.9, (p.batch_size, p.state_size)).astype(np.float32)
    return weights, x, y, state


def numpy_forward(w: dict, x: np.ndarray, state: np.ndarray):
    """state_t = tanh(concat(x_t, state_{t-1}) W + b); probabilities = softmax(state_t W2 + b2)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    steps, s = [], state.astype(np.float64)
    for t in range(x.shape[1]):
        s = np.tanh(np.concatenate([x[:, t : t + 1], s], axis=1) @ w["W"] + w["b"])
        steps.append(s)
    states = np.stack(steps, axis=1)  # [B, T, S]
    logits = states @ w["W2"] + w["b2"]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return states, probs / probs.sum(-1, keepdims=True)


def numpy_loss_and_grads(w: dict, x: np.ndarray, y: np.ndarray, state: np.ndarray):
    """Mean sparse cross-entropy over the window and its gradients by backpropagation through time."""
    states, probs = numpy_forward(w, x, state)
    B, T = x.shape
    picked = np.take_along_axis(probs, y[..., None], -1)[..., 0]
    loss = -np.log(picked).mean()
    dlogits = probs.copy()
    np.put_along_axis(dlogits, y[..., None], np.take_along_axis(probs, y[..., None], -1) - 1, -1)
    dlogits /= B * T
    W, W2 = w["W"].astype(np.float64), w["W2"].astype(np.float64)
    g = {
        "W": np.zeros_like(W),
        "b": np.zeros((1, W.shape[1])),
        "W2": np.einsum("bts,btc->sc", states, dlogits),
        "b2": dlogits.sum((0, 1))[None],
    }
    carry = np.zeros((B, W.shape[1]))
    for t in reversed(range(T)):
        previous = states[:, t - 1] if t > 0 else state.astype(np.float64)
        da = (dlogits[:, t] @ W2.T + carry) * (1 - states[:, t] ** 2)
        g["W"] += np.concatenate([x[:, t : t + 1], previous], axis=1).T @ da
        g["b"] += da.sum(0, keepdims=True)
        carry = da @ W[1:].T  # no gradient flows into the incoming state: it is fed as a value
    return loss, states[:, -1], g


def test_forward_of_one_window_matches_numpy():
    w, x, _, state = fixed_case()
    states = cell_states(tf.constant(w["W"]), tf.constant(w["b"]), tf.constant(x), tf.constant(state))
    probs = tf.nn.softmax(logits_of(tf.constant(w["W2"]), tf.constant(w["b2"]), states))
    want_states, want_probs = numpy_forward(w, x, state)
    np.testing.assert_allclose(states.numpy(), want_states, **TOL)
    np.testing.assert_allclose(probs.numpy(), want_probs, **TOL)


def run_one_window(w, x, y, state):
    trainer = Trainer.create(PARAMS, w)
    out_state, losses, probs = trainer.run_windows(
        tf.constant(x[None]),
        tf.constant(y[None]),
        tf.constant(0),
        tf.constant(1),
        tf.constant(state),
        tf.zeros([1]),
    )
    return trainer, out_state.numpy(), losses.numpy()[0], probs.numpy()


def test_one_compiled_training_step_matches_numpy():
    """Loss and final state of the window, then the weights after one TF1-style Adagrad step."""
    w, x, y, state = fixed_case(0)
    trainer, out_state, loss, probs = run_one_window(w, x, y, state)
    want_loss, want_state, grads = numpy_loss_and_grads(w, x, y, state)
    np.testing.assert_allclose(loss, want_loss, **TOL)
    np.testing.assert_allclose(out_state, want_state, **TOL)
    np.testing.assert_allclose(probs, numpy_forward(w, x, state)[1], **TOL)  # before the update
    after = trainer.weight_values()
    for name in WEIGHT_NAMES:
        accumulator = ADAGRAD_INITIAL_ACCUMULATOR + grads[name] ** 2
        want = w[name] - PARAMS.learning_rate * grads[name] / np.sqrt(accumulator)
        np.testing.assert_allclose(after[name], want, **TOL, err_msg=name)
        assert not np.allclose(after[name], w[name]), f"{name} did not move"
        np.testing.assert_allclose(
            trainer.accumulators[WEIGHT_NAMES.index(name)].numpy(), accumulator, **TOL, err_msg=name
        )


def test_second_window_accumulates_adagrad():
    """Two windows in one call: the second step divides by the root of both squared gradients."""
    w, x, y, state = fixed_case(2)
    _, x2, y2, _ = fixed_case(3)
    trainer = Trainer.create(PARAMS, w)
    out_state, losses, _ = trainer.run_windows(
        tf.constant(np.stack([x, x2])),
        tf.constant(np.stack([y, y2])),
        tf.constant(0),
        tf.constant(2),
        tf.constant(state),
        tf.zeros([2]),
    )
    loss1, state1, g1 = numpy_loss_and_grads(w, x, y, state)
    acc = {n: ADAGRAD_INITIAL_ACCUMULATOR + g1[n] ** 2 for n in WEIGHT_NAMES}
    w1 = {n: w[n] - PARAMS.learning_rate * g1[n] / np.sqrt(acc[n]) for n in WEIGHT_NAMES}
    loss2, state2, g2 = numpy_loss_and_grads(w1, x2, y2, state1)
    np.testing.assert_allclose(losses.numpy(), [loss1, loss2], **TOL)
    np.testing.assert_allclose(out_state.numpy(), state2, **TOL)
    for name in WEIGHT_NAMES:
        want = w1[name] - PARAMS.learning_rate * g2[name] / np.sqrt(acc[name] + g2[name] ** 2)
        np.testing.assert_allclose(trainer.weight_values()[name], want, **TOL, err_msg=name)


def test_serving_forward_matches_numpy_from_a_zero_state():
    w, x, _, _ = fixed_case(4)
    forward = make_forward([tf.constant(w[n]) for n in WEIGHT_NAMES])
    zero = np.zeros((x.shape[0], PARAMS.state_size), np.float32)
    np.testing.assert_allclose(forward(tf.constant(x)).numpy(), numpy_forward(w, x, zero)[1], **TOL)


def test_initial_weights_are_the_tutorials():
    p = TrainingParams(state_size=6, num_classes=3)
    w = initial_weights(np.random.default_rng(0), p)
    assert w["W"].shape == (7, 6) and w["W2"].shape == (6, 3)
    assert w["b"].shape == (1, 6) and w["b2"].shape == (1, 3)
    assert all(v.dtype == np.float32 for v in w.values())
    for name in ("W", "W2"):
        assert w[name].min() >= 0 and w[name].max() < 1 and w[name].std() > 0.1
    assert not w["b"].any() and not w["b2"].any()
