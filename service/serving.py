"""A saved model in memory: its compiled forward pass, warmed, fed bucket shapes, batched."""

import logging
import threading

from pathlib import Path

import numpy as np

from contract.provenance import SAVED_MODEL_DIR
from service.batching import MIN_LENGTH, MIN_ROWS, Batcher

# Shapes compiled when a model loads, so that common requests never wait for XLA.
WARM_LENGTHS = (16, 32, 64, 128, 256)
log = logging.getLogger(__name__)
_configured = threading.Lock()
_threads: list[int] = []


def configure_tensorflow(threads: int) -> None:
    """Size TensorFlow's thread pools once per process, before its runtime starts."""
    with _configured:
        if _threads:
            return
        import tensorflow as tf

        # One API process per core: more threads per process only contend for the same cores.
        try:
            tf.config.threading.set_inter_op_parallelism_threads(threads)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already runs in this process (a test, an embedding app): keep its pools
            log.info("TensorFlow was started before the API sized its threads; keeping its own")
        _threads.append(threads)


class LoadedModel:
    """A saved model's TensorFlow SavedModel loaded once and warmed; predictions never call MLflow."""

    def __init__(self, path: str, max_batch_rows: int = 1024):
        import tensorflow as tf

        self._tf = tf
        # The SavedModel itself, not MLflow's loader: no flavor module imported, nothing unpickled.
        module = tf.saved_model.load(str(Path(path) / SAVED_MODEL_DIR))
        self.echo_step = int(module.echo_step.numpy())
        # Work per padded cell grows with the state (and the classes): what a request's cost counts.
        weights = getattr(module, "weights", None)
        self.state_size = int(weights[0].shape[-1]) if weights else 1
        if hasattr(module, "forward"):
            concrete = module.forward.get_concrete_function()
            # The flat call skips binding arguments to the Python signature (inspect), which costs
            # more than running the compiled pass itself; checked against the public call on load.
            self._flat = lambda tensor: concrete._call_flat([tensor], concrete.captured_inputs)
            probe = tf.constant(np.random.default_rng(0).integers(0, 2, (3, 20), dtype=np.int32))
            try:
                same = np.array_equal(self._flat(probe).numpy(), concrete(probe).numpy())
            except Exception:  # noqa: BLE001 (another TensorFlow without that private method)
                same = False
            if not same:
                self._flat = concrete
            self.predict = Batcher(self._forward, max_batch_rows)
            for length in WARM_LENGTHS:
                self.predict(np.zeros((MIN_ROWS, length), np.int32))
        else:  # saved before models had a bare forward pass: their __call__ pads and returns a dict
            self._module = module
            self.predict = self._legacy
            self.predict(np.zeros((1, MIN_LENGTH), np.int32))

    def _forward(self, bits: np.ndarray) -> np.ndarray:
        return self._flat(self._tf.constant(bits)).numpy()

    def _legacy(self, bits: np.ndarray) -> np.ndarray:
        return self._module(self._tf.constant(bits))["p_one"].numpy()
