"""The echo RNN's forward pass in NumPy, for large batches: one vectorised step per bit for all rows.

ONNX Runtime's RNN operator costs about 90 ns a cell whatever the batch; a NumPy step costs a
couple of microseconds plus about 30 ns a row, so from a few dozen rows NumPy is the faster of the
two (docs/benchmarks.md), and for one long sequence ONNX Runtime is, by far.
"""

import numpy as np
from onnxruntime import InferenceSession

from contract import provenance


class NumpyForward:
    """P(bit = 1) at every position, from the weights the checked ONNX graph gives back."""

    def __init__(self, weights: dict[str, np.ndarray]):
        W = weights["W"].astype(np.float32)
        # Laid out [state, rows] per step: the recurrent product is one small matrix times the batch.
        self.w_x = W[0][:, None]
        self.r_t = np.ascontiguousarray(W[1:].T)
        self.b = weights["b"].astype(np.float32).reshape(-1, 1)
        self.w2_t = np.ascontiguousarray(weights["W2"].astype(np.float32).T)
        self.b2 = weights["b2"].astype(np.float32).reshape(-1)

    def __call__(self, bits: np.ndarray) -> np.ndarray:
        """[rows, length] bits in, float32 [rows, length] probabilities out, as the graph gives them."""
        rows = bits.shape[0]
        states = self.w_x[None] * bits.T.astype(np.float32)[:, None, :] + self.b  # [length, state, rows]
        previous = np.zeros((states.shape[1], rows), np.float32)
        for step in states:  # each step's input term, overwritten by its state
            step += self.r_t @ previous
            np.tanh(step, out=step)
            previous = step
        logits = np.matmul(self.w2_t, states)  # [length, classes, rows]
        logits += self.b2[:, None]
        # Softmax's class 1 as 1 / Σ_k exp(l_k - l_1): no reduction along the short class axis, NumPy's slow case.
        one = logits[:, 1]
        total = np.ones_like(one)
        with np.errstate(over="ignore"):  # exp overflowing to inf gives 1 / inf = 0, the right limit
            for k in range(logits.shape[1]):
                if k != 1:
                    total += np.exp(logits[:, k] - one)
        return np.reciprocal(total, out=total).T


def weights_of(session: InferenceSession, names: list[str]) -> dict[str, np.ndarray] | None:
    """The trained weights a serving graph gives back as outputs; None for a graph written before it did."""
    outputs = {provenance.SERVING_WEIGHT_OUTPUT.format(k): k for k in provenance.SERVING_WEIGHTS}
    if not set(outputs) <= set(names):
        return None
    values = session.run(list(outputs), {provenance.SERVING_INPUT: np.zeros((1, 1), np.int32)})
    return dict(zip(outputs.values(), values))
