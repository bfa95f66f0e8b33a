"""Training a job: epochs of compiled window runs, with progress, cancellation and evaluation."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from worker.engine.data import generate_epoch, generate_series
from worker.engine.device import select_device
from worker.engine.model import Trainer, initial_weights, make_forward
from worker.params import TrainingParams

PROGRESS_INTERVAL_S = 2.0
CHUNK_TARGET_S = 0.5  # a chunk this long keeps progress well inside PROGRESS_INTERVAL_S
EVAL_SEQUENCES, EVAL_LENGTH = 8, 500


class TrainingCancelled(Exception):
    """The cancel check asked the engine to stop."""


@dataclass
class Progress:
    """Where training stands; losses holds the step losses since the previous report."""

    epoch: int  # epochs completed, or the one under way (1-based)
    epochs: int
    step: int  # steps completed over the whole job
    steps: int
    loss: float
    first_step: int  # global index of losses[0]
    losses: np.ndarray
    epoch_done: bool = False
    epoch_loss: float | None = None
    echo_accuracy: float | None = None
    # At about every tenth of the run: the last window's x, y and probabilities, for the figure.
    window: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass
class TrainingResult:
    """What a finished job produced."""

    params: TrainingParams
    device: str
    weights: dict[str, np.ndarray]
    losses: np.ndarray
    epoch_losses: list[float]
    echo_accuracy: list[float]
    last_window: tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y, probabilities
    compile_seconds: float
    epoch_seconds: list[float] = field(default_factory=list)


def echo_accuracy(forward, rng: np.random.Generator, echo_step: int) -> float:
    """Share of echoed bits right on fresh series, at positions ≥ echo_step."""
    x = rng.integers(0, 2, size=(EVAL_SEQUENCES, EVAL_LENGTH), dtype=np.int32)
    probs = forward(x).numpy()
    predicted = probs.argmax(-1)[:, echo_step:]
    target = x[:, : EVAL_LENGTH - echo_step]
    return float((predicted == target).mean())


def snapshot_epochs(num_epochs: int, count: int = 10) -> set[int]:
    """The epochs (1-based) that end each tenth of a run, the last one included."""
    return {max(1, round(num_epochs * k / count)) for k in range(1, count + 1)}


def train(
    params: TrainingParams,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train the echo RNN; reports progress and checks for cancellation every epoch and ≤ 2 s."""
    params = params.resolved()
    device = select_device(params.device)
    rng = np.random.default_rng(params.seed)
    steps_per_epoch, total = params.steps_per_epoch, params.total_steps
    all_losses = np.zeros(total, np.float32)
    epoch_losses: list[float] = []
    accuracies: list[float] = []
    epoch_seconds: list[float] = []
    compile_seconds = 0.0
    reported = 0  # global steps already handed to on_progress

    snapshots = snapshot_epochs(params.num_epochs)

    def report(epoch: int, step: int, epoch_loss: float | None = None, accuracy: float | None = None, window=None) -> None:
        nonlocal reported
        if on_progress is not None:
            on_progress(
                Progress(
                    epoch=epoch + 1, epochs=params.num_epochs, step=step, steps=total,
                    loss=float(all_losses[step - 1]), first_step=reported,
                    losses=all_losses[reported:step].copy(), epoch_done=epoch_loss is not None,
                    epoch_loss=epoch_loss, echo_accuracy=accuracy, window=window,
                )
            )
        reported = step

    with tf.device(device):
        trainer = Trainer.create(params, initial_weights(rng, params))
        forward = make_forward(trainer.weights)
        eval_rng = np.random.default_rng([params.seed, 1])
        chunk = 1  # the first call compiles; one window keeps its timing to the compilation
        for epoch in range(params.num_epochs):
            xs_np, ys_np = generate_epoch(rng, params)
            xs, ys = tf.constant(xs_np), tf.constant(ys_np)
            state = tf.zeros([params.batch_size, params.state_size])
            losses = tf.zeros([steps_per_epoch])
            done, last_report, epoch_start = 0, time.monotonic(), time.monotonic()
            while done < steps_per_epoch:
                count = min(chunk, steps_per_epoch - done)
                t0 = time.monotonic()
                state, losses, probs = trainer.run_windows(
                    xs, ys, tf.constant(done), tf.constant(count), state, losses
                )
                losses_np = losses.numpy()
                elapsed = time.monotonic() - t0
                if epoch == 0 and done == 0:
                    compile_seconds, chunk = elapsed, 16
                else:
                    chunk = max(1, int(count * CHUNK_TARGET_S / max(elapsed, 1e-4)))
                base = epoch * steps_per_epoch
                all_losses[base + done : base + done + count] = losses_np[done : done + count]
                done += count
                if done < steps_per_epoch and time.monotonic() - last_report >= CHUNK_TARGET_S:
                    last_report = time.monotonic()
                    _check(should_stop)
                    report(epoch, base + done)
            epoch_seconds.append(time.monotonic() - epoch_start)
            epoch_losses.append(float(losses_np.mean()))
            accuracies.append(echo_accuracy(forward, eval_rng, params.echo_step))
            window = (xs_np[-1], ys_np[-1], probs.numpy()) if epoch + 1 in snapshots else None
            report(epoch, base + done, epoch_losses[-1], accuracies[-1], window)
            _check(should_stop)
    return TrainingResult(
        params=params,
        device=device,
        weights=trainer.weight_values(),
        losses=all_losses,
        epoch_losses=epoch_losses,
        echo_accuracy=accuracies,
        last_window=(xs_np[-1], ys_np[-1], probs.numpy()),
        compile_seconds=compile_seconds,
        epoch_seconds=epoch_seconds,
    )


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise TrainingCancelled("training was cancelled")

