"""Training a group of models of the same shapes as one compiled loop, with progress, cancellation and evaluation.

A job is the group of one (train_model): every model of a group trains exactly as that job would.
A model that reaches its target loss stops: its weights and optimizer state are frozen by a mask in
the compiled step while the others go on (it still computes, unrecorded), and it reports no more.
"""

import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams
from contract.sweep import SHAPE_FIELDS
from worker.engine.checkpoint import GroupCheckpoint
from worker.engine.device import select_device
from worker.engine.evaluate import evaluate
from worker.engine.forward import WEIGHT_NAMES
from worker.engine.group_model import GroupTrainer, epoch_capacity
from worker.engine.results import (
    EVAL_LENGTH,
    EVAL_SEQUENCES,
    StepReport,
    TrainingCancelled,
    TrainingResult,
    echo_score,
    echo_sequences,
    snapshot_epochs,
)
from worker.engine.trial import Trial

# A compiled call this long: reports and cancel checks mid-epoch come often (an epoch of the defaults
# takes milliseconds, a long one well under a second), and the call's own cost stays a fraction of it.
CHUNK_TARGET_S = 0.05
SHARED = (*SHAPE_FIELDS, "device")  # what the models of one group must share


def train_group(
    params_list: list[TrainingParams],
    on_progress: Callable[[list[StepReport | None]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: GroupCheckpoint | None = None,
    on_checkpoint: Callable[[GroupCheckpoint], None] | None = None,
    checkpoint_every_s: float = 2.0,
) -> list[TrainingResult]:
    """Train K models that share SHARED (from a group checkpoint if given) in one compiled loop; reports
    progress, checks for cancellation and offers checkpoints at epoch ends and at least every 2 s.

    on_progress receives one StepReport per model, in the order of params_list, None for a model that
    has stopped (each model's reports are those its job would send). Results come in the same order;
    their epoch_seconds and compile_seconds are the group's.
    """
    params_list = [p.resolved() for p in params_list]
    if not params_list:
        raise ValueError("a group needs at least one model")
    for name in SHARED:
        if len({getattr(p, name) for p in params_list}) > 1:
            raise ValueError(f"the models of a group must share {name}")
    device = select_device(params_list[0].device)
    with tf.device(device):
        loop = _GroupLoop(params_list, on_progress, should_stop, on_checkpoint, checkpoint_every_s, device)
        loop.run(resume)
        return loop.results()


class _GroupLoop:
    """The state of one group's training between compiled window runs."""

    def __init__(
        self,
        params_list: list[TrainingParams],
        on_progress: Callable[[list[StepReport | None]], None] | None,
        should_stop: Callable[[], bool] | None,
        on_checkpoint: Callable[[GroupCheckpoint], None] | None,
        checkpoint_every_s: float,
        device: str,
    ):
        self.on_progress, self.should_stop = on_progress, should_stop
        self.on_checkpoint, self.checkpoint_every_s, self.device = on_checkpoint, checkpoint_every_s, device
        self.params = params_list[0]  # the shapes every model shares
        self.trials = [Trial(p) for p in params_list]
        self.trainer = GroupTrainer.create(self.params, [t.init for t in self.trials], device)
        self.rates = tf.constant([p.learning_rate for p in params_list], tf.float32)
        self.compile_seconds = 0.0
        self.last_checkpoint = time.monotonic()
        self.snapshots = snapshot_epochs(self.params.num_epochs)
        self.chunk = 1  # the first call compiles; one window keeps its timing to the compilation

    def run(self, resume: GroupCheckpoint | None) -> None:
        """Train every epoch not yet trained, while a model is left that has not reached its target."""
        first_epoch, done, state = self._restore(resume) if resume is not None else (0, 0, None)
        for epoch in range(first_epoch, self.params.num_epochs):
            for trial in self.trials:
                trial.check_target()
            if not any(t.active for t in self.trials):
                break
            self._epoch(epoch, done, state)
            done, state = 0, None

    def _restore(self, resume: GroupCheckpoint) -> tuple[int, int, np.ndarray | None]:
        if len(resume.models) != len(self.trials):
            raise ValueError(f"a checkpoint of {len(resume.models)} models for a group of {len(self.trials)}")
        for trial, checkpoint, window in zip(self.trials, resume.models, resume.windows):
            trial.resume(checkpoint, window)
            trial.check_target()
        self.trainer.restore(
            *(
                {n: np.stack([getattr(c, part)[n] for c in resume.models]) for n in WEIGHT_NAMES}
                for part in ("weights", "accumulators")
            )
        )
        positions = {(c.epoch, c.done) for t, c in zip(self.trials, resume.models) if t.active}
        if len(positions) > 1:
            raise ValueError(f"the models still training stand at different positions: {sorted(positions)}")
        if not positions:
            return self.params.num_epochs, 0, None
        zero = np.zeros((self.params.batch_size, self.params.state_size), np.float32)
        state = np.stack([c.state if t.active else zero for t, c in zip(self.trials, resume.models)])
        epoch, done = positions.pop()
        return epoch, done, state

    def _epoch(self, epoch: int, done: int, state: np.ndarray | None) -> None:
        params, steps, trials = self.params, self.params.steps_per_epoch, self.trials
        shape = (steps, params.batch_size, params.truncated_backprop_length)
        drawn = [t.draw_epoch() if t.active else (np.zeros(shape, np.int32),) * 2 for t in trials]
        xs_np, ys_np = (np.stack([d[i] for d in drawn], axis=1) for i in (0, 1))  # [steps, K, B, T]
        capacity = epoch_capacity(steps, len(trials), params)  # windows past steps are zeros the loop never reaches
        xs, ys = (
            tf.constant(np.concatenate([a, np.zeros((capacity - steps, *a.shape[1:]), a.dtype)]))
            for a in (xs_np, ys_np)
        )
        active = tf.constant([t.active for t in trials])
        base = epoch * steps
        state = tf.zeros([len(trials), params.batch_size, params.state_size]) if state is None else tf.constant(state)
        losses_np = np.zeros((capacity, len(trials)), np.float32)
        for k, trial in enumerate(trials):
            losses_np[:done, k] = trial.losses[base : base + done]
        losses = tf.constant(losses_np)
        last_report = epoch_start = time.monotonic()
        while done < steps:
            count = min(self.chunk, steps - done)
            t0 = time.monotonic()
            state, losses, probs = self.trainer.run_windows(
                xs, ys, tf.constant(done), tf.constant(count), state, losses, self.rates, active
            )
            losses_np = losses.numpy()
            self._size_chunks(count, time.monotonic() - t0)
            for k, trial in enumerate(trials):
                if trial.active:
                    trial.losses[base + done : base + done + count] = losses_np[done : done + count, k]
            done += count
            if done < steps and time.monotonic() - last_report >= CHUNK_TARGET_S:
                last_report = time.monotonic()
                _check(self.should_stop)
                self._report([t.report(epoch, base + done) if t.active else None for t in trials])
                self._maybe_checkpoint(epoch, done, base + done, state)
        self._end_epoch(epoch, time.monotonic() - epoch_start, xs_np, ys_np, probs.numpy(), losses_np[:steps])
        _check(self.should_stop)
        for trial in trials:
            trial.check_target()
        if any(t.active for t in trials):  # stopping here: nothing left to resume
            self._maybe_checkpoint(epoch + 1, 0, base + done, None)

    def _end_epoch(
        self, epoch: int, seconds: float, xs: np.ndarray, ys: np.ndarray, probs: np.ndarray, losses: np.ndarray
    ) -> None:
        """Each active model's epoch loss, echo check, last window and report."""
        trials = self.trials
        idle = np.zeros((EVAL_SEQUENCES, EVAL_LENGTH), np.int32)
        echo = np.stack([echo_sequences(t.eval_rng) if t.active else idle for t in trials])
        echo_probs = self.trainer.probabilities(echo)
        reports: list[StepReport | None] = []
        step = (epoch + 1) * self.params.steps_per_epoch
        for k, trial in enumerate(trials):
            if not trial.active:
                reports.append(None)
                continue
            trial.epoch_seconds.append(seconds)
            trial.epoch_losses.append(float(np.ascontiguousarray(losses[:, k]).mean()))
            trial.accuracies.append(echo_score(echo_probs[k], echo[k], trial.params.echo_step))
            trial.last_window = (xs[-1, k], ys[-1, k], probs[k])
            window = trial.last_window if epoch + 1 in self.snapshots else None
            reports.append(trial.report(epoch, step, trial.epoch_losses[-1], trial.accuracies[-1], window))
        self._report(reports)

    def _size_chunks(self, count: int, elapsed: float) -> None:
        if self.compile_seconds == 0.0:
            self.compile_seconds, self.chunk = elapsed, 16
        else:
            self.chunk = max(1, int(count * CHUNK_TARGET_S / max(elapsed, 1e-4)))

    def _maybe_checkpoint(self, epoch: int, done: int, step: int, state: tf.Tensor | None) -> None:
        if self.on_checkpoint is None or time.monotonic() - self.last_checkpoint < self.checkpoint_every_s:
            return
        if step == self.params.total_steps:
            return  # nothing left to resume
        shape = (len(self.trials), self.params.batch_size, self.params.state_size)
        carried = np.zeros(shape, np.float32) if state is None else state.numpy()
        weights, accumulators = self.trainer.weight_values(), self.trainer.accumulator_values()
        checkpoints = [
            t.checkpoint(
                epoch,
                done,
                step,
                carried[k],
                {n: w[k] for n, w in weights.items()},
                {n: a[k] for n, a in accumulators.items()},
            )
            for k, t in enumerate(self.trials)
        ]
        self.on_checkpoint(GroupCheckpoint(checkpoints, [None if t.active else t.last_window for t in self.trials]))
        self.last_checkpoint = time.monotonic()

    def _report(self, reports: list[StepReport | None]) -> None:
        if self.on_progress is not None:
            self.on_progress(reports)

    def results(self) -> list[TrainingResult]:
        """What each model's training produced, with its held-out evaluation."""
        weights = self.trainer.weight_values()
        return [
            trial.result(
                self.device,
                {n: w[k] for n, w in weights.items()},
                self.compile_seconds,
                evaluate(self.trainer.forward_of(k), trial.params),
            )
            for k, trial in enumerate(self.trials)
        ]


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise TrainingCancelled("training was cancelled")
