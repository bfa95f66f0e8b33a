"""The trained network as an ONNX graph built from its weights: what the API serves, without TensorFlow.

ONNX's RNN operator is the tutorial's cell exactly, tanh(x_t · W_x + h_{t-1} · R + b), from a zero
state; a MatMul, Add and Softmax then give P(bit = 1) at every position. ONNX Runtime runs the
recurrence in C++ (a 100,000-bit sequence in tens of milliseconds, no compilation), and the file
is a few hundred bytes. tf2onnx is not used: its support for current Keras and TensorFlow lags.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.provenance import SERVING_INPUT, SERVING_META_ECHO_STEP, SERVING_META_STATE_SIZE, SERVING_OUTPUT

OPSET = 17


def build(weights: dict[str, np.ndarray], echo_step: int) -> bytes:
    """The serialized graph: int32 bits [batch, length] in, float32 P(bit = 1) [batch, length] out."""
    W, b, W2, b2 = (np.asarray(weights[k], np.float32) for k in ("W", "b", "W2", "b2"))
    state = W.shape[1]
    constants = [
        numpy_helper.from_array(W[:1].T.reshape(1, state, 1).copy(), "W_x"),  # [directions, hidden, input]
        numpy_helper.from_array(W[1:].T.reshape(1, state, state).copy(), "R"),  # [directions, hidden, hidden]
        numpy_helper.from_array(np.concatenate([b.reshape(-1), np.zeros(state, np.float32)]).reshape(1, -1), "B"),
        numpy_helper.from_array(W2, "W2"),
        numpy_helper.from_array(b2.reshape(-1), "b2"),
        numpy_helper.from_array(np.array([1], np.int64), "axis_1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis_2"),
        numpy_helper.from_array(np.array(1, np.int64), "class_1"),
    ]
    nodes = [
        helper.make_node("Cast", [SERVING_INPUT], ["bits"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["bits"], ["by_time"], perm=[1, 0]),  # [length, batch]
        helper.make_node("Unsqueeze", ["by_time", "axis_2"], ["X"]),  # [length, batch, 1]
        helper.make_node("RNN", ["X", "W_x", "R", "B"], ["Y"], hidden_size=state, activations=["Tanh"]),
        helper.make_node("Squeeze", ["Y", "axis_1"], ["states"]),  # [length, batch, state]
        helper.make_node("MatMul", ["states", "W2"], ["products"]),
        helper.make_node("Add", ["products", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        helper.make_node("Gather", ["probabilities", "class_1"], ["p_one_by_time"], axis=2),  # [length, batch]
        helper.make_node("Transpose", ["p_one_by_time"], [SERVING_OUTPUT], perm=[1, 0]),
    ]
    graph = helper.make_graph(
        nodes,
        "echo_rnn",
        [helper.make_tensor_value_info(SERVING_INPUT, TensorProto.INT32, ["batch", "length"])],
        [helper.make_tensor_value_info(SERVING_OUTPUT, TensorProto.FLOAT, ["batch", "length"])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="echo-rnn-service")
    model.ir_version = 8  # what ONNX Runtime releases of the last years all read
    helper.set_model_props(model, {SERVING_META_ECHO_STEP: str(echo_step), SERVING_META_STATE_SIZE: str(state)})
    onnx.checker.check_model(model)
    return model.SerializeToString()
