"""The trained network as an ONNX graph built from its weights: what the API serves, without TensorFlow.

ONNX's RNN operator is the tutorial's cell exactly, tanh(x_t · W_x + h_{t-1} · R + b), from a zero
state; a MatMul, Add and Softmax then give P(bit = 1) at every position. ONNX Runtime runs the
recurrence in C++ (a 100,000-bit sequence in tens of milliseconds, no compilation), and the file
is a few hundred bytes. tf2onnx is not used: its support for current Keras and TensorFlow lags.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.provenance import (
    SERVING_INPUT,
    SERVING_META_ECHO_STEP,
    SERVING_META_STATE_SIZE,
    SERVING_OUTPUT,
    SERVING_WEIGHT_OUTPUT,
    SERVING_WEIGHTS,
)

OPSET = 17


def build(weights: dict[str, np.ndarray], echo_step: int) -> bytes:
    """The serialized graph: int32 bits [batch, length] in, float32 P(bit = 1) [batch, length] out.

    The weights are stored once, as trained; its other outputs give them back (SERVING_WEIGHT_OUTPUT)
    for the API's NumPy pass. ONNX Runtime folds the RNN operator's views of them when it loads.
    """
    arrays = {k: np.asarray(weights[k], np.float32) for k in SERVING_WEIGHTS}
    state = arrays["W"].shape[1]
    constants = [
        *(numpy_helper.from_array(array, k) for k, array in arrays.items()),
        numpy_helper.from_array(np.zeros((1, state), np.float32), "zeros"),
        numpy_helper.from_array(np.array([0], np.int64), "axis_0"),
        numpy_helper.from_array(np.array([1], np.int64), "axis_1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis_2"),
        numpy_helper.from_array(np.array([1 + state], np.int64), "rows_end"),
        numpy_helper.from_array(np.array(1, np.int64), "class_1"),
    ]
    rnn_weights = [  # W is [1 + state, state]: the input's row, then the recurrent rows
        helper.make_node("Slice", ["W", "axis_0", "axis_1", "axis_0"], ["W_x_row"]),
        helper.make_node("Unsqueeze", ["W_x_row", "axis_2"], ["W_x"]),  # [directions, hidden, input]
        helper.make_node("Slice", ["W", "axis_1", "rows_end", "axis_0"], ["W_h"]),
        helper.make_node("Transpose", ["W_h"], ["W_h_T"], perm=[1, 0]),
        helper.make_node("Unsqueeze", ["W_h_T", "axis_0"], ["R"]),  # [directions, hidden, hidden]
        helper.make_node("Concat", ["b", "zeros"], ["B"], axis=1),  # input and recurrent biases
    ]
    nodes = [
        *rnn_weights,
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
        *(helper.make_node("Identity", [k], [SERVING_WEIGHT_OUTPUT.format(k)]) for k in arrays),
    ]
    outputs = [
        helper.make_tensor_value_info(SERVING_OUTPUT, TensorProto.FLOAT, ["batch", "length"]),
        *(
            helper.make_tensor_value_info(SERVING_WEIGHT_OUTPUT.format(k), TensorProto.FLOAT, array.shape)
            for k, array in arrays.items()
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "echo_rnn",
        [helper.make_tensor_value_info(SERVING_INPUT, TensorProto.INT32, ["batch", "length"])],
        outputs,
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="echo-rnn-service")
    model.ir_version = 8  # what ONNX Runtime releases of the last years all read
    helper.set_model_props(model, {SERVING_META_ECHO_STEP: str(echo_step), SERVING_META_STATE_SIZE: str(state)})
    onnx.checker.check_model(model)
    return model.SerializeToString()
