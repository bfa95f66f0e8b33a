"""The SavedModel: round trip, agreement with training's forward pass, exact bucketing."""

import numpy as np
import pytest
import tensorflow as tf

from tests.worker.engine.reference import cell_states, logits_of, save
from worker.engine import export


@pytest.fixture(scope="module")
def serve(trained, tmp_path_factory):
    """The trained model saved, loaded back, and its serving signature as a NumPy function."""
    path = str(tmp_path_factory.mktemp("saved") / "echo")
    save(export.build(trained.weights, trained.params.echo_step), path)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]

    def call(sequences: np.ndarray) -> np.ndarray:
        out = signature(sequences=tf.constant(sequences, tf.int32))
        assert list(out) == ["output_0"]
        return out["output_0"].numpy()

    call.loaded = loaded
    return call


def training_forward(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Probabilities as training computes them (cell_states, logits_of, softmax) from a zero state."""
    zero = tf.zeros([x.shape[0], weights["W"].shape[1]])
    states = cell_states(tf.constant(weights["W"]), tf.constant(weights["b"]), tf.constant(x), zero)
    return tf.nn.softmax(logits_of(tf.constant(weights["W2"]), tf.constant(weights["b2"]), states)).numpy()


def bits(seed: int, rows: int, length: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (rows, length), dtype=np.int32)


def test_round_trip_matches_the_training_forward_pass(trained, serve):
    x = bits(0, 4, 50)
    p_one = serve(x)
    assert p_one.shape == (4, 50) and p_one.dtype == np.float32
    np.testing.assert_allclose(p_one, training_forward(trained.weights, x)[:, :, 1], atol=1e-5)
    assert ((p_one[:, 3:] > 0.5) == x[:, :-3]).mean() >= 0.999  # it echoes


@pytest.mark.parametrize("rows, length", [(16, 16), (16, 128), (32, 64), (3, 7)])
def test_the_bare_forward_pass_equals_the_padding_call(serve, rows, length):
    """forward, which callers feed bucket shapes, gives what __call__ gives."""
    x = bits(rows + length, rows, length)
    forward = serve.loaded.forward.get_concrete_function()
    np.testing.assert_allclose(forward(tf.constant(x)).numpy(), serve(x), rtol=0, atol=1e-6)


def test_the_module_keeps_the_weights_and_echo_step(trained, serve):
    assert int(serve.loaded.echo_step.numpy()) == trained.params.echo_step
    for variable, name in zip(serve.loaded.weights, ("W", "b", "W2", "b2")):
        np.testing.assert_array_equal(variable.numpy(), trained.weights[name])


@pytest.mark.parametrize("rows, length", [(1, 1), (3, 1), (1, 16), (1, 17), (7, 33), (20, 5), (2, 1000)])
def test_any_batch_and_length(trained, serve, rows, length):
    x = bits(rows * 1000 + length, rows, length)
    p_one = serve(x)
    assert p_one.shape == (rows, length) and ((p_one >= 0) & (p_one <= 1)).all()
    if length <= 100:  # the training forward pass unrolls in the graph: keep it short
        np.testing.assert_allclose(p_one, training_forward(trained.weights, x)[:, :, 1], atol=1e-5)


def test_padding_on_the_right_changes_nothing(serve):
    """The RNN is causal: a sequence's outputs equal its prefix's outputs in a longer sequence."""
    x = bits(1, 1, 40)
    alone = serve(x[:, :23])  # bucket 32
    longer = serve(x)[:, :23]  # bucket 64, other bits after position 23
    np.testing.assert_allclose(alone, longer, rtol=0, atol=1e-6)


def test_batching_with_longer_sequences_changes_nothing(serve):
    short, long_ = bits(2, 1, 5)[0], bits(3, 1, 300)[0]
    batch = np.zeros((2, 300), np.int32)
    batch[0, :5], batch[1] = short, long_
    together = serve(batch)
    np.testing.assert_allclose(serve(short[None])[0], together[0, :5], rtol=0, atol=1e-6)
    np.testing.assert_allclose(serve(long_[None])[0], together[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "n, want",
    [
        (0, 16),
        (1, 16),
        (15, 16),
        (16, 16),
        (17, 32),
        (100, 128),
        (1000, 1024),
        (1024, 1024),
        (1025, 2048),
        (2**20, 2**20),
        (2**20 + 1, 2**21),
    ],
)
def test_bucket_values(n, want):
    assert int(export.bucket(tf.constant(n))) == want


def test_bucket_is_the_next_power_of_two_everywhere():
    n = np.arange(1, 70_000)
    want = np.maximum(export.MIN_BUCKET, 2 ** np.ceil(np.log2(n)).astype(np.int64))
    np.testing.assert_array_equal(export.bucket(tf.constant(n, tf.int32)).numpy(), want)


def test_a_module_traced_ahead_then_given_the_weights_saves_the_same_model(trained, serve, tmp_path):
    """export.traced builds and traces while the job trains; set_weights then makes it the trained model."""
    module = export.traced(trained.params).set_weights(trained.weights)
    save(module, str(tmp_path / "ahead"))
    loaded = tf.saved_model.load(str(tmp_path / "ahead"))
    x = bits(9, 5, 70)
    np.testing.assert_array_equal(
        loaded.signatures["serving_default"](sequences=tf.constant(x))["output_0"].numpy(), serve(x)
    )
