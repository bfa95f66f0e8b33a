"""A halving group's rungs as people see them: each scored trial's rung scores, and a pruned trial's rung and
evaluation, in its job record (one fenced step a rung); rung metrics in each run, tags on a pruned one's."""

import dataclasses
from typing import TYPE_CHECKING, Any

from contract.fence import Step
from contract.job_store import encode

if TYPE_CHECKING:
    from worker.attempt.attempt import Attempt
    from worker.engine.halving import RungReport


class Rungs:
    """The engine's on_rung for an attempt: a rung recomputed after a resume writes the same fields again."""

    def __init__(self, attempt: "Attempt"):
        self.attempt = attempt
        self.kept = [[r.model_dump() for r in job.rungs] for job in attempt.jobs]
        # A resumed attempt logs only the rung points its runs lack.
        self.logged = (
            [run.logged_count("rung_eval_echo_accuracy") for run in attempt.runs]
            if attempt.ctx.claim.resumed
            else [0] * len(attempt.jobs)
        )

    def __call__(self, report: "RungReport") -> None:
        a, pruned = self.attempt, set(report.pruned)
        a.runs_ready()
        step = Step(a.fence)
        for k, (job, run, params, score) in enumerate(zip(a.jobs, a.runs, a.params, report.scores)):
            if score is None:
                continue
            entry = {
                "rung": report.rung,
                "epoch": report.epoch,
                "echo_accuracy": score.echo_accuracy,
                "loss": score.loss,
            }
            self.kept[k] = [r for r in self.kept[k] if r["rung"] < report.rung] + [entry]
            fields: dict[str, Any] = {"rungs": self.kept[k]}
            if report.rung > self.logged[k]:
                at = report.epoch * params.steps_per_epoch
                run.add("rung_eval_echo_accuracy", [score.echo_accuracy], at)
                run.add("rung_eval_loss", [score.loss], at)
            if k in pruned:
                fields |= {"pruned": report.rung, "evaluation": dataclasses.asdict(score)}
                run.tag_later({"pruned": "true", "pruned_rung": str(report.rung), "pruned_epoch": str(report.epoch)})
            step.hset(a.store.key(job.id), encode(fields))
        a.write(step, f"recording rung {report.rung}")
        for k in sorted(pruned):
            score = report.scores[k]
            assert score is not None, "a pruned model was scored at its rung"
            a.wrap_up(k, report.epoch * a.params[k].steps_per_epoch, score.echo_accuracy, score.loss)
