"""A tpe sweep whose batch ended but whose next batch was never made (its finisher died): the reconciler's finish
task makes it, against a real Redis, and queues its groups in their owner's turn."""

from contract import tasks
from contract.dispatch import Dispatch
from contract.sweep import SweepRequest, group
from contract.sweep_store import SweepStore
from tests.support import free_port
from worker.attempt.run import finish_sweep
from worker.attempt.watchdog import Watchdog
from worker.settings import WorkerSettings

REQUEST = SweepRequest.model_validate(
    {
        "params": {"num_epochs": 1, "total_series_length": 1000, "seed": 1},
        "random": {
            "trials": 4,
            "batch": 2,
            "sampler": "tpe",
            "space": {"learning_rate": {"low": 0.01, "high": 1.0, "log": True}},
        },
    }
)


def test_the_reconciler_makes_the_batch_a_lost_finisher_did_not(store, redis_server):
    sweeps = SweepStore(store)
    trials = REQUEST.trials()
    sweep = sweeps.create(REQUEST, trials, group(trials, 2), owner="bob", group_size=2)
    sweeps.move(sweep.id, "running")
    for i, trial in enumerate(sweep.trials):  # the first batch ended; its finisher died before the next
        store.move(trial.job_id, "running")
        store.move(trial.job_id, "succeeded", evaluation={"echo_accuracy": 0.9, "loss": 0.1 * (i + 1)})
    sent: list[tasks.Message] = []
    watchdog = Watchdog(store, sent.append, interval_s=5, reconcile_after_s=60)
    assert watchdog.round().sweeps_finished == [sweep.id] and sent[-1] == tasks.finish_sweep(sweep.id)
    # The finish task: no MLflow is needed to make a batch (none answers here).
    settings = WorkerSettings(redis_url=redis_server.url, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    assert finish_sweep(store, settings, sweep.id) == "continued"
    after = sweeps.get(sweep.id)
    assert after is not None and after.status == "running" and after.groups == [[0, 1], [2, 3]]
    assert [t.status for t in after.trials] == ["succeeded", "succeeded", "queued", "queued"]
    waiting = Dispatch(store.redis, store.prefix).waiting()
    assert waiting == [tasks.train_group(sweep.id, 1, [t.job_id for t in after.trials[2:]])]
    assert not store.redis.exists(sweeps.finish_lease_key(sweep.id)), "the finisher's lease is released"
    assert finish_sweep(store, settings, sweep.id) == "nothing to do", "its trials wait: nothing more to make"
    store.redis.delete(f"{store.prefix}:watchdog", f"{store.prefix}:finishing:{sweep.id}")
    assert watchdog.round().sweeps_finished == []
