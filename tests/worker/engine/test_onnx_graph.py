"""The ONNX graph the API serves gives the TensorFlow model's probabilities, to 1e-5, for any length and batch."""

import numpy as np
import onnxruntime as ort
import pytest

from contract import provenance
from contract.params import TrainingParams
from service import numpy_forward
from worker.engine import export, onnx_graph
from worker.engine.model import initial_weights


@pytest.fixture(scope="module", params=["tutorial", "glorot"])
def weights(request) -> tuple[dict[str, np.ndarray], TrainingParams]:
    """Weights away from zero (random biases too), so every term of the cell counts."""
    params = TrainingParams(init=request.param, seed=5, echo_step=3)
    rng = np.random.default_rng(11)
    drawn = initial_weights(rng, params)
    drawn["b"] = rng.uniform(-0.5, 0.5, drawn["b"].shape).astype(np.float32)
    drawn["b2"] = rng.uniform(-0.5, 0.5, drawn["b2"].shape).astype(np.float32)
    return drawn, params


def session(graph: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 100), (64, 33), (1, 1000), (1, 100_000), (2, 20_000)])
def test_the_graph_gives_the_saved_models_probabilities(weights, shape):
    drawn, params = weights
    graph = onnx_graph.build(drawn, params.echo_step)
    bits = np.random.default_rng(shape[1]).integers(0, 2, shape, dtype=np.int32)
    served = session(graph).run([provenance.SERVING_OUTPUT], {provenance.SERVING_INPUT: bits})[0]
    expected = export.build(drawn, params.echo_step)(bits).numpy()
    assert served.shape == shape and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)


def test_rows_of_a_batch_are_what_each_gives_alone(weights):
    drawn, params = weights
    model = session(onnx_graph.build(drawn, params.echo_step))
    bits = np.random.default_rng(3).integers(0, 2, (5, 300), dtype=np.int32)
    batch = model.run(None, {provenance.SERVING_INPUT: bits})[0]
    for row in range(5):
        alone = model.run(None, {provenance.SERVING_INPUT: bits[row : row + 1]})[0]
        np.testing.assert_allclose(batch[row : row + 1], alone, atol=1e-6, rtol=0)


def test_the_graph_names_its_echo_step_and_state_size_and_stays_small(weights):
    drawn, params = weights
    graph = onnx_graph.build(drawn, params.echo_step)
    meta = session(graph).get_modelmeta().custom_metadata_map
    assert meta == {provenance.SERVING_META_ECHO_STEP: "3", provenance.SERVING_META_STATE_SIZE: "4"}
    biggest = initial_weights(np.random.default_rng(0), TrainingParams(state_size=256, num_classes=16))
    assert len(onnx_graph.build(biggest, 3)) < provenance.SERVING_MAX_BYTES


@pytest.mark.parametrize("shape", [(1, 1), (48, 1), (64, 33), (1000, 100), (2, 20_000)])
def test_the_apis_numpy_pass_gives_the_saved_models_probabilities(weights, shape):
    drawn, params = weights
    model = session(onnx_graph.build(drawn, params.echo_step))
    given = numpy_forward.weights_of(model, [o.name for o in model.get_outputs()])
    bits = np.random.default_rng(shape[0]).integers(0, 2, shape, dtype=np.int32)
    served = numpy_forward.NumpyForward(given)(bits)
    expected = export.build(drawn, params.echo_step)(bits).numpy()
    assert served.shape == shape and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)


def test_the_numpy_pass_reads_any_number_of_classes():
    drawn = initial_weights(np.random.default_rng(2), TrainingParams(state_size=8, num_classes=5))
    model = session(onnx_graph.build(drawn, 2))
    given = numpy_forward.weights_of(model, [o.name for o in model.get_outputs()])
    bits = np.random.default_rng(4).integers(0, 2, (70, 50), dtype=np.int32)
    expected = model.run([provenance.SERVING_OUTPUT], {provenance.SERVING_INPUT: bits})[0]
    np.testing.assert_allclose(numpy_forward.NumpyForward(given)(bits), expected, atol=1e-5, rtol=0)
