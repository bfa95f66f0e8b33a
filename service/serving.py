"""A saved model in memory: its ONNX graph in ONNX Runtime, one thread per API process, batched.

The API never imports TensorFlow: the network's few hundred flops per bit run in ONNX Runtime's
C++ RNN operator, with no compilation for any shape, from the graph's bytes (no file, no pickle);
batches of NUMPY_FROM_ROWS rows or more run in NumPy, from the weights the same graph gives back.
"""

import numpy as np
import onnxruntime as ort

from contract import provenance
from service.batching import Batcher
from service.numpy_forward import NumpyForward, weights_of

# Where NumPy's step per bit for the whole batch overtakes ONNX Runtime's cell by cell (docs/benchmarks.md).
NUMPY_FROM_ROWS = 48


class LoadedModel:
    """A version's ONNX graph, loaded once; predictions never call MLflow."""

    def __init__(self, graph: bytes, threads: int = 1, max_batch_rows: int = 1024):
        options = ort.SessionOptions()
        # One API process per core: more threads per process only contend for the same cores.
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.echo_step = int(meta[provenance.SERVING_META_ECHO_STEP])
        # Work per cell grows with the state: what a request's cost counts.
        self.state_size = int(meta[provenance.SERVING_META_STATE_SIZE])
        self._outputs = [provenance.SERVING_OUTPUT]
        weights = weights_of(self.session, [output.name for output in self.session.get_outputs()])
        self._numpy = NumpyForward(weights) if weights is not None else None
        self.predict = Batcher(self._forward, max_batch_rows, pad=False)
        self.predict(np.zeros((1, 1), np.int32))  # the first run allocates its buffers: not on a request's path

    def _forward(self, bits: np.ndarray) -> np.ndarray:
        if self._numpy is not None and bits.shape[0] >= NUMPY_FROM_ROWS:
            return self._numpy(bits)
        return self.session.run(self._outputs, {provenance.SERVING_INPUT: bits})[0]
