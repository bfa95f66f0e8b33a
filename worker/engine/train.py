"""Training a job: epochs of compiled window runs, with progress, cancellation and evaluation."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from worker.engine.checkpoint import Checkpoint
from worker.engine.data import generate_epoch
from worker.engine.device import select_device
from worker.engine.evaluate import Evaluation, evaluate
from worker.engine.model import Trainer, initial_weights
from contract.params import TrainingParams

PROGRESS_INTERVAL_S = 2.0
CHUNK_TARGET_S = 0.5  # a chunk this long keeps progress well inside PROGRESS_INTERVAL_S
EVAL_SEQUENCES, EVAL_LENGTH = 8, 500


class TrainingCancelled(Exception):
    """The cancel check asked the engine to stop."""


@dataclass
class StepReport:
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
    evaluation: Evaluation | None = None
    stopped_early: int | None = None  # the epoch whose mean loss reached params.target_loss, if it ended the run


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


def train_model(
    params: TrainingParams,
    on_progress: Callable[[StepReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: Checkpoint | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    checkpoint_every_s: float = 2.0,
) -> TrainingResult:
    """Train the echo RNN (from a checkpoint if given); reports progress, checks for
    cancellation and offers checkpoints at epoch ends and at least every 2 s."""
    params = params.resolved()
    device = select_device(params.device)
    with tf.device(device):
        loop = _Loop(params, on_progress, should_stop, on_checkpoint, checkpoint_every_s, device)
        loop.run(resume)
    return loop.result(device)


class _Loop:
    """The state of one training run between compiled window runs."""

    def __init__(self, params, on_progress, should_stop, on_checkpoint, checkpoint_every_s, device=""):
        self.params, self.on_progress, self.should_stop = params, on_progress, should_stop
        self.on_checkpoint, self.checkpoint_every_s = on_checkpoint, checkpoint_every_s
        self.rng = np.random.default_rng(params.seed)
        self.eval_rng = np.random.default_rng([params.seed, 1])
        self.trainer = Trainer.create(params, initial_weights(self.rng, params), device)
        self.forward = self.trainer.forward
        self.all_losses = np.zeros(params.total_steps, np.float32)
        self.epoch_losses: list[float] = []
        self.accuracies: list[float] = []
        self.epoch_seconds: list[float] = []
        self.compile_seconds = 0.0
        self.reported = 0  # global steps already handed to on_progress
        self.last_checkpoint = time.monotonic()
        self.snapshots = snapshot_epochs(params.num_epochs)
        self.stopped_early: int | None = None
        self.chunk = 1  # the first call compiles; one window keeps its timing to the compilation

    def run(self, resume: Checkpoint | None) -> None:
        """Train every epoch not yet trained."""
        first_epoch, done, state = 0, 0, None
        if resume is not None:
            self.rng.bit_generator.state = resume.rng_state
            self.eval_rng.bit_generator.state = resume.eval_rng_state
            self.trainer.restore(resume.weights, resume.accumulators)
            self.all_losses[: resume.step] = resume.losses[: resume.step]
            self.epoch_losses, self.accuracies = list(resume.epoch_losses), list(resume.echo_accuracy)
            self.reported = resume.step
            first_epoch, done, state = resume.epoch, resume.done, resume.state
        for epoch in range(first_epoch, self.params.num_epochs):
            if self._reached_target():
                break
            self._epoch(epoch, done, state)
            done, state = 0, None

    def _reached_target(self) -> bool:
        """Whether the last epoch's mean loss reached target_loss (an early stop, when epochs were left)."""
        target, trained = self.params.target_loss, len(self.epoch_losses)
        if target is None or not trained or self.epoch_losses[-1] > target or trained == self.params.num_epochs:
            return False
        self.stopped_early = trained
        return True

    def _epoch(self, epoch: int, done: int, state: np.ndarray | None) -> None:
        params, steps = self.params, self.params.steps_per_epoch
        rng_state = self.rng.bit_generator.state
        self.xs_np, self.ys_np = generate_epoch(self.rng, params)
        xs, ys = tf.constant(self.xs_np), tf.constant(self.ys_np)
        base = epoch * steps
        state = tf.zeros([params.batch_size, params.state_size]) if state is None else tf.constant(state)
        losses = tf.constant(np.pad(self.all_losses[base : base + done], (0, steps - done)))
        last_report = epoch_start = time.monotonic()
        while done < steps:
            count = min(self.chunk, steps - done)
            t0 = time.monotonic()
            state, losses, self.probs = self.trainer.run_windows(xs, ys, tf.constant(done), tf.constant(count), state, losses)
            losses_np = losses.numpy()
            self._size_chunks(count, time.monotonic() - t0)
            self.all_losses[base + done : base + done + count] = losses_np[done : done + count]
            done += count
            if done < steps and time.monotonic() - last_report >= CHUNK_TARGET_S:
                last_report = time.monotonic()
                _check(self.should_stop)
                self._report(epoch, base + done)
                self._maybe_checkpoint(epoch, done, base + done, rng_state, state)
        self.epoch_seconds.append(time.monotonic() - epoch_start)
        self.epoch_losses.append(float(losses_np.mean()))
        self.accuracies.append(echo_accuracy(self.forward, self.eval_rng, params.echo_step))
        window = (self.xs_np[-1], self.ys_np[-1], self.probs.numpy()) if epoch + 1 in self.snapshots else None
        self._report(epoch, base + done, self.epoch_losses[-1], self.accuracies[-1], window)
        _check(self.should_stop)
        if not self._reached_target():  # stopping here: nothing left to resume
            self._maybe_checkpoint(epoch + 1, 0, base + done, self.rng.bit_generator.state, None)

    def _size_chunks(self, count: int, elapsed: float) -> None:
        if self.compile_seconds == 0.0:
            self.compile_seconds, self.chunk = elapsed, 16
        else:
            self.chunk = max(1, int(count * CHUNK_TARGET_S / max(elapsed, 1e-4)))

    def _maybe_checkpoint(self, epoch: int, done: int, step: int, rng_state: dict, state) -> None:
        if self.on_checkpoint is None or time.monotonic() - self.last_checkpoint < self.checkpoint_every_s:
            return
        if step == self.params.total_steps:
            return  # nothing left to resume
        carried = np.zeros((self.params.batch_size, self.params.state_size), np.float32) if state is None else state.numpy()
        self.on_checkpoint(
            Checkpoint(
                epoch=epoch, done=done, step=step, rng_state=rng_state, eval_rng_state=self.eval_rng.bit_generator.state,
                state=carried, weights=self.trainer.weight_values(), accumulators=self.trainer.accumulator_values(),
                losses=self.all_losses[:step].copy(), epoch_losses=list(self.epoch_losses),
                echo_accuracy=list(self.accuracies),
            )
        )
        self.last_checkpoint = time.monotonic()

    def _report(self, epoch: int, step: int, epoch_loss=None, accuracy=None, window=None) -> None:
        if self.on_progress is not None:
            self.on_progress(
                StepReport(
                    epoch=epoch + 1, epochs=self.params.num_epochs, step=step, steps=self.params.total_steps,
                    loss=float(self.all_losses[step - 1]), first_step=self.reported,
                    losses=self.all_losses[self.reported : step].copy(), epoch_done=epoch_loss is not None,
                    epoch_loss=epoch_loss, echo_accuracy=accuracy, window=window,
                )
            )
        self.reported = step

    def result(self, device: str) -> TrainingResult:
        """What the run produced."""
        return TrainingResult(
            params=self.params,
            device=device,
            weights=self.trainer.weight_values(),
            losses=self.all_losses[: len(self.epoch_losses) * self.params.steps_per_epoch],
            epoch_losses=self.epoch_losses,
            echo_accuracy=self.accuracies,
            last_window=(self.xs_np[-1], self.ys_np[-1], self.probs.numpy()),
            compile_seconds=self.compile_seconds,
            epoch_seconds=self.epoch_seconds,
            evaluation=evaluate(self.forward, self.params),
            stopped_early=self.stopped_early,
        )


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise TrainingCancelled("training was cancelled")
