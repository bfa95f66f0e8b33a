"""Training a group of models of the same shapes as one compiled loop, with progress, cancellation and evaluation.

A job is the group of one (train_model): every model of a group trains exactly as that job would.
A model that reaches its target loss stops: its weights and optimizer state are frozen by a mask in
the compiled step while the others go on (it still computes, unrecorded), and it reports no more.
A halving group (halving.py) also prunes models at its rungs and repacks the survivors into a smaller
program: the program's slots say which model trains where (None: an idle slot).
"""

import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams
from contract.sweep import SHAPE_FIELDS, Halving
from worker.engine.checkpoint import GroupCheckpoint
from worker.engine.device import select_device
from worker.engine.evaluate import HeldOutScores, evaluate, evaluate_stacked
from worker.engine.forward import WEIGHT_NAMES
from worker.engine.group_model import GroupTrainer, epoch_capacity
from worker.engine.halving import RungReport, program_size, prune, rung_of, score_dict
from worker.engine.member import GroupMember
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
    halving: Halving | None = None,
    on_rung: Callable[[RungReport], None] | None = None,
) -> list[TrainingResult]:
    """Train K models that share SHARED (from a group checkpoint if given) in one compiled loop; reports
    progress, checks for cancellation and offers checkpoints at epoch ends and at least every 2 s (and
    after every rung of a halving group, whose decisions on_rung receives first).

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
        loop.halving, loop.on_rung = halving, on_rung
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
        self.trials = [GroupMember(p) for p in params_list]
        self.halving: Halving | None = None
        self.on_rung: Callable[[RungReport], None] | None = None
        self.slots: list[int | None] = list(range(len(self.trials)))  # the program's models: trial indexes
        self.trainer: GroupTrainer | None = None
        self.programs: list[tuple[int, float]] = []  # each program's size and its first call's seconds
        self.last_checkpoint = time.monotonic()
        self.snapshots = snapshot_epochs(self.params.num_epochs)

    @property
    def compile_seconds(self) -> float:
        """The first program's first call: its compilation when the process had not compiled it before."""
        return self.programs[0][1] if self.programs else 0.0

    def run(self, resume: GroupCheckpoint | None) -> None:
        """Train every epoch not yet trained, while a model is left that has not reached its target."""
        if resume is not None:
            first_epoch, done, state = self._restore(resume)
        else:
            first_epoch, done, state = 0, 0, None
            self.trainer = GroupTrainer.create(self.params, [t.init for t in self.trials], self.device)
            self._program_set()
        for epoch in range(first_epoch, self.params.num_epochs):
            for trial in self.trials:
                trial.check_target()
            if not any(t.active for t in self.trials):
                break
            self._epoch(epoch, done, state)
            done, state = 0, None

    @property
    def program(self) -> GroupTrainer:
        """The compiled program training the slots (run() or a resume makes it first)."""
        assert self.trainer is not None, "the group has no program yet"
        return self.trainer

    def _program_set(self) -> None:
        """The slots' learning rates; the next call is timed as the program's first."""
        self.rates = tf.constant(
            [self.trials[i].params.learning_rate if i is not None else 0.0 for i in self.slots], tf.float32
        )
        self.chunk, self.first_call = 1, True  # one window keeps the first call's timing to its compilation

    def _load(self, values: dict[int, tuple[dict, dict]]) -> None:
        """A program for the slots (compiled, or kept by the process), set to each model's weights and accumulators."""
        first = next(i for i in self.slots if i is not None)
        rows = [values[i if i is not None else first] for i in self.slots]  # idle slots: a copy, masked
        self.trainer = GroupTrainer.create(self.params, [w for w, _ in rows], self.device)
        self.trainer.restore(*({n: np.stack([r[part][n] for r in rows]) for n in WEIGHT_NAMES} for part in (0, 1)))
        self._program_set()

    def _values(self) -> dict[int, tuple[dict, dict]]:
        """Every model's weights and accumulators: from the program, or as it left the program."""
        out = {i: t.frozen for i, t in enumerate(self.trials) if t.frozen is not None}
        weights, accumulators = self.program.weight_values(), self.program.accumulator_values()
        for k, i in enumerate(self.slots):
            if i is not None:
                out[i] = ({n: w[k] for n, w in weights.items()}, {n: a[k] for n, a in accumulators.items()})
        return out

    def _restore(self, resume: GroupCheckpoint) -> tuple[int, int, np.ndarray | None]:
        if len(resume.models) != len(self.trials):
            raise ValueError(f"a checkpoint of {len(resume.models)} models for a group of {len(self.trials)}")
        halving = resume.halving or {}
        for k, (trial, checkpoint, window) in enumerate(zip(self.trials, resume.models, resume.windows)):
            trial.resume(checkpoint, window)
            if halving:
                trial.rungs, trial.pruned = list(halving["rungs"][k]), halving["pruned"][k]
            trial.check_target()
        values = {k: (c.weights, c.accumulators) for k, c in enumerate(resume.models)}
        self.slots = halving.get("slots", self.slots)
        for k, trial in enumerate(self.trials):
            if k not in self.slots:
                trial.frozen = values[k]
        self._load(values)
        positions = {(c.epoch, c.done) for t, c in zip(self.trials, resume.models) if t.active}
        if len(positions) > 1:
            raise ValueError(f"the models still training stand at different positions: {sorted(positions)}")
        if not positions:
            return self.params.num_epochs, 0, None
        zero = np.zeros((self.params.batch_size, self.params.state_size), np.float32)
        live = [self.trials[i] if i is not None and self.trials[i].active else None for i in self.slots]
        state = np.stack(
            [resume.models[i].state if i is not None and t is not None else zero for i, t in zip(self.slots, live)]
        )
        epoch, done = positions.pop()
        return epoch, done, state

    def _live(self) -> list[GroupMember | None]:
        """The program's slots: the model training there, None where none does (idle, stopped or pruned)."""
        return [self.trials[i] if i is not None and self.trials[i].active else None for i in self.slots]

    def _by_trial(self, per_slot: list) -> list:
        """Per-slot values in the order of the group's models (None for a model not in the program)."""
        out = [None] * len(self.trials)
        for i, value in zip(self.slots, per_slot):
            if i is not None:
                out[i] = value
        return out

    def _epoch(self, epoch: int, done: int, state: np.ndarray | None) -> None:
        params, steps, live = self.params, self.params.steps_per_epoch, self._live()
        models = len(live)
        shape = (steps, params.batch_size, params.truncated_backprop_length)
        drawn = [t.draw_epoch() if t is not None else (np.zeros(shape, np.int32),) * 2 for t in live]
        xs_np, ys_np = (np.stack([d[i] for d in drawn], axis=1) for i in (0, 1))  # [steps, K, B, T]
        capacity = epoch_capacity(steps, models, params)  # windows past steps are zeros the loop never reaches
        xs, ys = (
            tf.constant(np.concatenate([a, np.zeros((capacity - steps, *a.shape[1:]), a.dtype)]))
            for a in (xs_np, ys_np)
        )
        active = tf.constant([t is not None for t in live])
        base = epoch * steps
        state = tf.zeros([models, params.batch_size, params.state_size]) if state is None else tf.constant(state)
        losses_np = np.zeros((capacity, models), np.float32)
        for k, trial in enumerate(live):
            if trial is not None:
                losses_np[:done, k] = trial.losses[base : base + done]
        losses = tf.constant(losses_np)
        last_report = epoch_start = time.monotonic()
        while done < steps:
            count = min(self.chunk, steps - done)
            t0 = time.monotonic()
            state, losses, probs = self.program.run_windows(
                xs, ys, tf.constant(done), tf.constant(count), state, losses, self.rates, active
            )
            losses_np = losses.numpy()
            self._size_chunks(count, time.monotonic() - t0)
            for k, trial in enumerate(live):
                if trial is not None:
                    trial.losses[base + done : base + done + count] = losses_np[done : done + count, k]
            done += count
            if done < steps and time.monotonic() - last_report >= CHUNK_TARGET_S:
                last_report = time.monotonic()
                _check(self.should_stop)
                self._report(self._by_trial([t.report(epoch, base + done) if t else None for t in live]))
                self._maybe_checkpoint(epoch, done, base + done, state)
        self._end_epoch(epoch, time.monotonic() - epoch_start, xs_np, ys_np, probs.numpy(), losses_np[:steps])
        _check(self.should_stop)
        for trial in self.trials:
            trial.check_target()
        rung = rung_of(self.halving, params.num_epochs, epoch + 1) if self.halving is not None else None
        if rung is not None:
            self._rung(rung, epoch + 1)
        if any(t.active for t in self.trials):  # stopping here: nothing left to resume
            self._maybe_checkpoint(epoch + 1, 0, base + done, None, force=rung is not None)

    def _end_epoch(
        self, epoch: int, seconds: float, xs: np.ndarray, ys: np.ndarray, probs: np.ndarray, losses: np.ndarray
    ) -> None:
        """Each active model's epoch loss, echo check, last window and report."""
        live = self._live()
        idle = np.zeros((EVAL_SEQUENCES, EVAL_LENGTH), np.int32)
        echo = np.stack([echo_sequences(t.eval_rng) if t is not None else idle for t in live])
        echo_probs = self.program.probabilities(echo)
        reports: list[StepReport | None] = []
        step = (epoch + 1) * self.params.steps_per_epoch
        for k, trial in enumerate(live):
            if trial is None:
                reports.append(None)
                continue
            trial.epoch_seconds.append(seconds)
            trial.epoch_losses.append(float(np.ascontiguousarray(losses[:, k]).mean()))
            trial.accuracies.append(echo_score(echo_probs[k], echo[k], trial.params.echo_step))
            trial.last_window = (xs[-1, k], ys[-1, k], probs[k])
            window = trial.last_window if epoch + 1 in self.snapshots else None
            reports.append(trial.report(epoch, step, trial.epoch_losses[-1], trial.accuracies[-1], window))
        self._report(self._by_trial(reports))

    def _rung(self, rung: int, epochs: int) -> None:
        """Score the live models on held-out sequences, prune all but the best 1/η, repack the survivors."""
        live = self._live()
        evaluations = evaluate_stacked(self.program.probabilities, [t.params if t else None for t in live])
        scores = {i: e for i, e in zip(self.slots, evaluations) if i is not None and e is not None}
        assert self.halving is not None, "only a halving group has rungs"
        pruned = prune(self.halving, scores)
        for i, evaluation in scores.items():
            self.trials[i].rungs.append(score_dict(rung, epochs, evaluation))
        for i in pruned:
            self.trials[i].pruned = rung
        if self.on_rung is not None:
            self.on_rung(RungReport(rung, epochs, [scores.get(i) for i in range(len(self.trials))], pruned))
        survivors = [i for i, t in enumerate(self.trials) if t.active]
        size = program_size(len(survivors), len(self.slots))
        if size < len(self.slots):
            values = self._values()
            for i, trial in enumerate(self.trials):
                if i not in survivors:
                    trial.frozen = values[i]
            self.slots = survivors + [None] * (size - len(survivors))
            self._load(values)

    def _size_chunks(self, count: int, elapsed: float) -> None:
        if self.first_call:
            self.programs.append((len(self.slots), elapsed))
            self.first_call, self.chunk = False, 16
        else:
            self.chunk = max(1, int(count * CHUNK_TARGET_S / max(elapsed, 1e-4)))

    def _maybe_checkpoint(self, epoch: int, done: int, step: int, state: tf.Tensor | None, force: bool = False) -> None:
        if self.on_checkpoint is None or (
            not force and time.monotonic() - self.last_checkpoint < self.checkpoint_every_s
        ):
            return
        if step == self.params.total_steps:
            return  # nothing left to resume
        carried = np.zeros((len(self.trials), self.params.batch_size, self.params.state_size), np.float32)
        if state is not None:
            for i, row in zip(self.slots, state.numpy()):
                if i is not None:
                    carried[i] = row
        values = self._values()
        checkpoints = [t.checkpoint(epoch, done, step, carried[i], *values[i]) for i, t in enumerate(self.trials)]
        halving = (
            None
            if self.halving is None
            else {
                "slots": self.slots,
                "pruned": [t.pruned for t in self.trials],
                "rungs": [t.rungs for t in self.trials],
            }
        )
        windows = [None if t.active else t.last_window for t in self.trials]
        self.on_checkpoint(GroupCheckpoint(checkpoints, windows, halving))
        self.last_checkpoint = time.monotonic()

    def _report(self, reports: list[StepReport | None]) -> None:
        if self.on_progress is not None:
            self.on_progress(reports)

    def results(self) -> list[TrainingResult]:
        """What each model's training produced, with its held-out evaluation (a pruned one's: its last rung's)."""
        values = self._values()
        out = []
        for i, trial in enumerate(self.trials):
            if trial.pruned is not None:
                last = trial.rungs[-1]
                evaluation = HeldOutScores(last["echo_accuracy"], last["loss"], last["by_length"])
            else:
                evaluation = evaluate(self.program.forward_for(values[i][0]), trial.params)
            result = trial.result(self.device, values[i][0], self.compile_seconds, evaluation)
            result.programs = list(self.programs)
            out.append(result)
        return out


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise TrainingCancelled("training was cancelled")
