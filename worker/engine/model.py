"""The tutorial's network: its initial weights (its equations are in forward.py and group_model.py)."""

import numpy as np

from contract.params import TrainingParams


def initial_weights(rng: np.random.Generator, params: TrainingParams) -> dict[str, np.ndarray]:
    """Biases zero; W and W2 uniform in [0, 1) as the tutorial's tf.random_uniform, or Glorot-uniform (params.init)."""
    s, c = params.state_size, params.num_classes
    draw = _glorot if params.init == "glorot" else (lambda r, shape: r.random(shape, dtype=np.float32))
    return {
        "W": draw(rng, (1 + s, s)),
        "b": np.zeros((1, s), np.float32),
        "W2": draw(rng, (s, c)),
        "b2": np.zeros((1, c), np.float32),
    }


def _glorot(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Uniform in ±sqrt(6 / (fan_in + fan_out)): zero-centred, so tanh units start in their linear range."""
    limit = np.sqrt(6.0 / sum(shape))
    return rng.uniform(-limit, limit, shape).astype(np.float32)
