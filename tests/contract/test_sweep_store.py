"""The sweep store against a real Redis: trials as jobs, progress from their records, groups counted once."""

import uuid

import pytest

from contract.job_store import JobStore, QuotaExceeded
from contract.sweep import SweepRequest, group
from contract.sweep_record import trial_of
from contract.sweep_store import SweepStore

REQUEST = SweepRequest.model_validate(
    {"params": {"num_epochs": 2, "total_series_length": 750}, "grid": {"state_size": [4, 8], "seed": [0, 1]}}
)


@pytest.fixture
def sweeps(redis_client) -> SweepStore:
    return SweepStore(JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}", retention_s=60))


def create(sweeps: SweepStore, owner: str | None = None):
    trials = REQUEST.trials()
    return sweeps.create(REQUEST, trials, group(trials, 32), owner=owner)


def test_a_new_sweep_is_answered_as_a_read_would_give_it(sweeps):
    made = create(sweeps, owner="bob")
    assert made == sweeps.get(made.id) and made.model_dump_json() == sweeps.get(made.id).model_dump_json()


def test_queued_trials_are_cancelled_in_one_round_trip_and_a_started_one_is_left(sweeps):
    jobs = [t.job_id for t in create(sweeps, owner="bob").trials]
    sweeps.jobs.move(jobs[1], "running")
    assert sweeps.jobs.cancel_queued([*jobs, "gone"], finished_at="t") == [True, False, True, True, False]
    assert [sweeps.jobs.get(j).status for j in jobs] == ["cancelled", "running", "cancelled", "cancelled"]
    assert sweeps.jobs.get(jobs[0]).finished_at == "t" and sweeps.jobs.count_by_status()["cancelled"] == 3
    assert {m.decode() for m in sweeps.redis.zrange(sweeps.jobs.index_key("cancelled", "bob"), 0, -1)} == {
        jobs[0],
        jobs[2],
        jobs[3],
    }


def test_each_trial_is_a_queued_job_of_its_sweep_and_group(sweeps):
    sweep = create(sweeps)
    assert sweep.status == "queued" and sweep.groups == [[0, 1], [2, 3]]
    assert [t.values for t in sweep.trials] == REQUEST.configurations()
    for trial in sweep.trials:
        job = sweeps.jobs.get(trial.job_id)
        assert job.status == "queued" and job.sweep.sweep_id == sweep.id
        assert (job.sweep.trial, job.sweep.group) == (trial.trial, trial.group)
    assert sweeps.group_jobs(sweep.id, 1) == [sweep.trials[2].job_id, sweep.trials[3].job_id]
    assert sweep.progress.model_dump() == {"trials": 4, "planned": 4, "finished": 0, "succeeded": 0, "fraction": 0.0}


def test_trials_do_not_count_towards_the_owners_job_quota(sweeps):
    create(sweeps, owner="alice")
    sweeps.jobs.create({"num_epochs": 1}, steps=1, owner="alice", quota=1)
    with pytest.raises(QuotaExceeded):
        sweeps.jobs.create({"num_epochs": 1}, steps=1, owner="alice", quota=1)


def test_a_sweep_and_its_trials_are_written_all_or_none(sweeps):
    trials = REQUEST.trials()
    with pytest.raises(KeyError):  # the fourth trial is in no group: nothing may have been written before it
        sweeps.create(REQUEST, trials, [[0, 1], [2]], owner="alice")
    assert sweeps.redis.keys(f"{sweeps.prefix}:job:*") == [] and sweeps.jobs.count_by_status().get("queued", 0) == 0
    assert sweeps.list(10, None, owner="alice") == ([], None)
    sweep = create(sweeps, owner="alice")  # and a whole one goes through
    assert {sweeps.jobs.get(t.job_id).status for t in sweep.trials} == {"queued"}


def test_an_owner_past_its_active_sweeps_is_refused_even_when_requests_arrive_together(sweeps):
    import threading

    trials = REQUEST.trials()
    start, outcomes = threading.Barrier(8), []

    def submit() -> None:
        start.wait()
        try:
            outcomes.append(sweeps.create(REQUEST, trials, group(trials, 32), owner="alice", max_active=2).id)
        except QuotaExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("refused") == 6 and sweeps.active("alice") == 2
    assert len(sweeps.redis.keys(f"{sweeps.prefix}:job:*")) == 2 * len(trials), "a refused sweep writes no trial"
    assert sweeps.create(REQUEST, trials, group(trials, 32), owner="bob", max_active=2).owner == "bob"


def test_progress_and_leaderboard_follow_the_trials_records(sweeps):
    sweep = create(sweeps)
    first, second = sweep.trials[0].job_id, sweep.trials[1].job_id
    for job_id, accuracy in ((first, 0.9), (second, 0.99)):
        sweeps.jobs.move(job_id, "running")
        sweeps.jobs.update(
            job_id,
            evaluation={"echo_accuracy": accuracy, "loss": 0.1},
            progress={"epoch": 2, "epochs": 2, "step": 20, "steps": 20, "fraction": 1.0},
        )
        sweeps.jobs.move(job_id, "succeeded")
    sweeps.jobs.update(sweep.trials[2].job_id, error="boom", stopped_early=1, metrics={"loss": 0.25})
    got = sweeps.get(sweep.id)
    assert got.progress.finished == 2 and got.progress.succeeded == 2 and got.progress.fraction == 0.5
    whole = [
        trial_of(job, v)
        for job, v in zip(sweeps.jobs.get_many([t.job_id for t in got.trials]), REQUEST.configurations())
    ]
    assert got.trials == whole, "a trial's line as its whole record says"
    assert [(r.rank, r.trial) for r in got.leaderboard] == [(1, 1), (2, 0)]


def test_a_group_counts_once_and_the_last_one_finishes_the_sweep(sweeps):
    sweep = create(sweeps)
    assert sweeps.group_finished(sweep.id, 0) is False
    assert sweeps.group_finished(sweep.id, 0) is False, "a group delivered again counts once"
    assert sweeps.group_finished(sweep.id, 1) is True
    assert sweeps.group_finished(sweep.id, 1) is False


def test_the_status_moves_as_a_jobs_does(sweeps):
    sweep = create(sweeps)
    assert sweeps.move(sweep.id, "succeeded") is False, "queued → succeeded is not a move"
    assert sweeps.move(sweep.id, "running") is True and sweeps.move(sweep.id, "running") is False
    assert sweeps.move(sweep.id, "succeeded") is True
    assert sweeps.get(sweep.id).finished_at is not None
    assert sweeps.move(sweep.id, "cancelled") is False


def test_listing_is_newest_first_with_a_cursor_and_per_owner(sweeps):
    made = [create(sweeps, owner="bob" if i % 2 else None).id for i in range(5)]
    page, cursor = sweeps.list(2, None)
    assert [s.id for s in page] == made[::-1][:2] and cursor is not None
    rest, end = sweeps.list(10, cursor)
    assert [s.id for s in rest] == made[::-1][2:] and end is None
    assert [s.id for s in sweeps.list(10, None, owner="bob")[0]] == [made[3], made[1]]


def test_finished_sweeps_past_the_retention_are_pruned(sweeps):
    old, running = create(sweeps), create(sweeps)
    sweeps.move(old.id, "running")
    sweeps.move(old.id, "failed", finished_at="2000-01-01T00:00:00.000Z")
    assert sweeps.prune() == 1
    assert sweeps.get(old.id) is None and sweeps.get(running.id) is not None


def test_a_listing_sums_up_progress_and_leader_as_the_sweep_itself_says(sweeps):
    sweep = create(sweeps, owner="bob")
    jobs = [t.job_id for t in sweep.trials]
    for job_id, accuracy, loss in ((jobs[0], 0.99, 0.2), (jobs[1], 0.99, 0.1), (jobs[2], 0.5, 0.01)):
        sweeps.jobs.move(job_id, "running")
        sweeps.jobs.update(
            job_id,
            evaluation={"echo_accuracy": accuracy, "loss": loss},
            progress={"epoch": 2, "epochs": 2, "step": 20, "steps": 20, "fraction": 1.0},
        )
        sweeps.jobs.move(job_id, "succeeded")
    sweeps.jobs.move(jobs[3], "running")
    sweeps.jobs.update(jobs[3], progress={"epoch": 1, "epochs": 2, "step": 7, "steps": 20, "fraction": 0.35})
    sweeps.update(sweep.id, curves_0=list(range(10_000)))  # a big field a listing never reads
    full = sweeps.get(sweep.id)
    [summary], _ = sweeps.list(10, None, owner="bob")
    assert summary.progress == full.progress and summary.progress.fraction == round(3.35 / 4, 4)
    assert summary.leader == full.leaderboard[0] and summary.leader.trial == 1
    assert summary.group_count == len(full.groups) and summary.request == full.request
    assert summary.model_dump(exclude={"progress", "leader", "group_count"}) == full.model_dump(
        include=set(summary.model_dump()) - {"progress", "leader", "group_count"}
    )
    assert len(summary.model_dump_json()) < 2_000


def test_a_halving_sweeps_listing_ranks_and_counts_pruned_trials_as_the_sweep_does(sweeps):
    sweep = create(sweeps, owner="bob")
    jobs = [t.job_id for t in sweep.trials]
    rung = {"rung": 1, "epoch": 1, "echo_accuracy": 1.0, "loss": 0.0}
    for job_id in jobs:
        sweeps.jobs.move(job_id, "running")
        sweeps.jobs.update(job_id, progress={"epoch": 1, "epochs": 2, "step": 10, "steps": 20, "fraction": 0.5})
    # Trial 0 pruned at the first rung with the best scores of all; trial 1 went on, and ended worse.
    sweeps.jobs.update(jobs[0], pruned=1, rungs=[rung], evaluation={"echo_accuracy": 1.0, "loss": 0.0})
    sweeps.jobs.update(
        jobs[1],
        rungs=[rung, {**rung, "rung": 2}],
        evaluation={"echo_accuracy": 0.9, "loss": 0.2},
        progress={"epoch": 2, "epochs": 2, "step": 20, "steps": 20, "fraction": 1.0},
    )
    for job_id in jobs[:2]:
        sweeps.jobs.move(job_id, "succeeded")
    sweeps.jobs.update(jobs[2], pruned=1, rungs=[rung])  # pruned, its group still training: done all the same
    full = sweeps.get(sweep.id)
    [summary], _ = sweeps.list(10, None, owner="bob")
    assert summary.progress == full.progress and summary.progress.fraction == round(3.5 / 4, 4)
    assert summary.leader == full.leaderboard[0] and (summary.leader.trial, summary.leader.rung) == (1, 2)
    assert not summary.leader.pruned and [r.pruned for r in full.leaderboard] == [False, True]


def test_a_finished_sweeps_tally_is_kept_and_read_as_one_field(sweeps):
    done, running = create(sweeps, owner="bob"), create(sweeps, owner="bob")
    first = done.trials[0].job_id
    sweeps.jobs.move(first, "running")
    sweeps.jobs.update(
        first,
        evaluation={"echo_accuracy": 0.75, "loss": 0.3},
        progress={"epoch": 2, "epochs": 2, "step": 20, "steps": 20, "fraction": 1.0},
    )
    sweeps.jobs.move(first, "succeeded")
    for trial in done.trials[1:]:
        sweeps.jobs.move(trial.job_id, "cancelled")
    sweeps.move(done.id, "cancelled")
    computed = {s.id: s for s in sweeps.list(10, None)[0]}
    assert sweeps.redis.hexists(sweeps.key(done.id), "tally") and not sweeps.redis.hexists(
        sweeps.key(running.id), "tally"
    )
    assert computed[done.id].leader.values == REQUEST.configurations()[0] and computed[done.id].progress.finished == 4
    sweeps.jobs.redis.delete(sweeps.jobs.key(first))  # its trials pruned: the kept tally still says what they were
    again = {s.id: s for s in sweeps.list(10, None)[0]}
    assert again[done.id] == computed[done.id] and again[running.id] == computed[running.id]


def test_a_tally_is_never_kept_in_a_record_that_is_gone_or_unfinished(sweeps):
    sweep = create(sweeps)
    assert sweeps.keep_script(keys=[sweeps.key("gone")], args=["{}"]) == 0 and not sweeps.redis.exists(
        sweeps.key("gone")
    )
    assert sweeps.keep_script(keys=[sweeps.key(sweep.id)], args=["{}"]) == 0
