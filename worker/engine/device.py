"""Choosing where TensorFlow trains: a GPU when asked or available, else the CPU."""

from contextlib import suppress

import tensorflow as tf


class DeviceUnavailable(RuntimeError):
    """The requested device does not exist on this worker."""


def select_device(requested: str) -> str:
    """Resolve auto/cpu/gpu to a TensorFlow device name, turning on GPU memory growth."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # A job must never hold the whole card: other jobs share it. RuntimeError: already
        # initialised in this process; growth was set then.
        with suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if requested == "gpu" and not gpus:
        raise DeviceUnavailable(
            "device=gpu was requested but TensorFlow sees no GPU on this worker; use device=auto or device=cpu"
        )
    if requested == "cpu" or not gpus:
        return "/CPU:0"
    return "/GPU:0"
