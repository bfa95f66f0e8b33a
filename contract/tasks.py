"""The Celery tasks the API and the workers share: their names, arguments and ids, each spelt once.

The API enqueues by name (send_task); the workers register under these names; the watchdog sends
the same messages again. No Celery import: `send` takes any app with send_task.
"""

from dataclasses import dataclass
from typing import Any, Protocol

TRAIN = "echo_rnn.train"
TRAIN_GROUP = "echo_rnn.train_group"  # args: sweep id, group index, the group's job ids
FINISH_SWEEP = "echo_rnn.finish_sweep"  # args: sweep id
BACKFILL_SERVING = "echo_rnn.backfill_serving"  # no args: every version registered before ONNX serving


@dataclass(frozen=True)
class Message:
    """One task to send: its name, arguments and id."""

    name: str
    args: list[Any]
    task_id: str


class Sender(Protocol):
    def send_task(self, name: str, *, args: list[Any], task_id: str) -> Any: ...


def train_job(job_id: str, params: dict[str, Any]) -> Message:
    """A job's training task (its task id is the job's id)."""
    return Message(TRAIN, [job_id, params], job_id)


def group_name(sweep_id: str, group: int) -> str:
    """A sweep group's name: its task's id, and what its checkpoint is filed under."""
    return f"{sweep_id}-g{group}"


def train_group(sweep_id: str, group: int, job_ids: list[str]) -> Message:
    """A sweep group's training task: its trials' jobs, trained together."""
    return Message(TRAIN_GROUP, [sweep_id, group, job_ids], group_name(sweep_id, group))


def finish_sweep(sweep_id: str) -> Message:
    """The task that ends a sweep whose trials have all ended (sent by the reconciler)."""
    return Message(FINISH_SWEEP, [sweep_id], f"{sweep_id}-finish")


def send(app: Sender, message: Message) -> None:
    """Enqueue a message through a Celery app."""
    app.send_task(message.name, args=message.args, task_id=message.task_id)


def backfill_serving(task_id: str) -> Message:
    """The task that writes the ONNX graph of every version registered before the API served them."""
    return Message(BACKFILL_SERVING, [], task_id)
