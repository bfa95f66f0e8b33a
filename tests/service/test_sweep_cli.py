"""echo-rnn sweep: its options as a request body, and the console script against a real API over HTTP.

The API runs in this process (a werkzeug server thread) on the Redis database of tests/service/test_sweeps.py
that no worker reads; where a test needs trials to finish, it plays the worker through the job and sweep stores.
"""

import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest
import typer
from flask import request
from werkzeug.serving import make_server

from contract.clock import now
from contract.sweep_store import SweepStore
from service.app import create_app
from service.cli.sweep_args import body, dimension, value
from tests.service.test_cli import ECHO_RNN, env, fails, ok
from tests.service.test_cli import cli as run_cli
from tests.service.test_sweeps import queued_tasks, settings, store, sweeps  # noqa: F401 (fixtures)
from tests.support import wait_for

TINY = ("--param", "num_epochs=1", "--param", "total_series_length=1000")


@pytest.fixture
def served(settings) -> Iterator[tuple[str, list[str]]]:  # noqa: F811
    """The API's URL, and the paths it has been asked for."""
    app, asked = create_app(settings), []
    app.before_request(lambda: asked.append(request.path))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", asked
    server.shutdown()
    thread.join(10)


def test_values_read_as_int_then_float_then_text():
    assert [value(t) for t in ("3", "-2", "0.1", "1e-3", "glorot", "none", "None", "nan")] == [
        3,
        -2,
        0.1,
        0.001,
        "glorot",
        None,
        None,
        "nan",
    ]
    assert dimension("0.01:1:log") == {"low": 0.01, "high": 1.0, "log": True}
    assert dimension("1:5") == {"low": 1.0, "high": 5.0, "log": False}
    assert dimension("tutorial|glorot") == {"values": ["tutorial", "glorot"]}
    assert dimension("none|0.5") == {"values": [None, 0.5]}


def test_options_make_the_request_body():
    grid = body(["num_epochs=5"], ["seed=0,1,2,3", "learning_rate=0.1,0.3"], None, [], None, "lr")
    assert grid == {
        "params": {"num_epochs": 5},
        "name": "lr",
        "grid": {"seed": [0, 1, 2, 3], "learning_rate": [0.1, 0.3]},
    }
    search = body(["target_loss=none"], [], 8, ["learning_rate=0.01:1:log", "init=tutorial|glorot"], 7, None)
    assert search == {
        "params": {"target_loss": None},
        "random": {
            "trials": 8,
            "seed": 7,
            "space": {
                "learning_rate": {"low": 0.01, "high": 1.0, "log": True},
                "init": {"values": ["tutorial", "glorot"]},
            },
        },
    }
    assert "seed" not in body([], [], 2, ["seed=1|2"], None, None)["random"]
    halving = body(["num_epochs=20"], ["seed=0,1"], None, [], None, None, "2:3")
    assert halving["scheduler"] == {"type": "halving", "min_epochs": 2, "reduction": 3}
    assert body([], ["seed=0"], None, [], None, None, "4")["scheduler"] == {"type": "halving", "min_epochs": 4}
    assert body([], [], 4, ["init=tutorial|glorot"], None, None, None, "qmc")["random"]["sampler"] == "qmc"
    tpe = body([], [], 4, ["init=tutorial|glorot"], None, None, None, "tpe", 2)["random"]
    assert (tpe["sampler"], tpe["batch"]) == ("tpe", 2)


@pytest.mark.parametrize(
    "args",
    [
        ([], [], None, [], None),  # no search
        ([], ["seed=1"], 3, ["seed=1|2"], None),  # both
        ([], ["seed=1"], None, ["init=glorot"], None),  # --space without --random
        ([], ["seed=1"], None, [], None, None, None, "qmc"),  # --sampler without --random
        ([], ["seed=1"], None, [], None, None, None, None, 2),  # --batch without --random
        (["epochs"], ["seed=1"], None, [], None),  # not NAME=VALUE
        ([], ["seed=1", "seed=2"], None, [], None),  # twice
        ([], [], 2, ["learning_rate=a:b"], None),  # not numbers
        ([], [], 2, ["learning_rate=1:2:3"], None),
    ],
)
def test_bad_options_are_usage_errors(args):
    with pytest.raises(typer.BadParameter):
        body(*args) if len(args) > 5 else body(*args, None)


@pytest.mark.parametrize("halving", ["2:3:4", "two", "2:0.5"])
def test_a_bad_halving_option_is_a_usage_error(halving):
    with pytest.raises(typer.BadParameter, match="MIN_EPOCHS"):
        body([], ["seed=1"], None, [], None, None, halving)


def test_start_queues_the_sweep_then_show_list_and_cancel(served, store):  # noqa: F811
    api, _ = served
    stdout = ok(
        run_cli(api, "sweep", "start", *TINY, "--grid", "state_size=4,8", "--grid", "seed=0,1", "--name", "demo")
    )
    sweep_id = stdout.strip()
    assert [(name, args[:2]) for name, _, args in queued_tasks(store)] == [
        ("echo_rnn.train_group", [sweep_id, 0]),
        ("echo_rnn.train_group", [sweep_id, 1]),
    ]
    shown = ok(run_cli(api, "sweep", "show", sweep_id))
    assert f"sweep {sweep_id} 'demo': queued  0%  0/4 trials finished" in shown and "state_size=8 seed=1" in shown
    assert sweep_id in ok(run_cli(api, "sweep", "list")) and "demo" in ok(run_cli(api, "sweep", "list"))
    assert ok(run_cli(api, "sweep", "cancel", sweep_id)).strip() == f"sweep {sweep_id}: cancelled"
    assert f"sweep {sweep_id} has already cancelled" in fails(run_cli(api, "sweep", "cancel", sweep_id), 1)


def test_a_tpe_search_shows_its_trials_made_beside_those_planned(served):
    api, _ = served
    args = ("--random", "5", "--sampler", "tpe", "--batch", "2", "--space", "learning_rate=0.1:1")
    started = run_cli(api, "sweep", "start", *TINY, *args)
    sweep_id = ok(started).strip()
    assert "2 (of 5 planned) trials in 1 group, queued" in started.stderr
    assert "0/2 (of 5 planned) trials finished" in ok(run_cli(api, "sweep", "show", sweep_id))
    assert "0/2 (of 5 planned)" in ok(run_cli(api, "sweep", "list"))


def test_an_invalid_trial_is_named_with_its_option(served):
    api, _ = served
    stderr = fails(run_cli(api, "sweep", "start", "--grid", "state_size=4,1000"), 1)
    assert "error: Invalid request: invalid body: grid.state_size" in stderr
    assert "grid.state_size (--grid state_size=…): trial 1 (state_size=1000)" in stderr
    assert "random.space (--space): " in fails(run_cli(api, "sweep", "start", "--random", "3"), 1)
    assert "give either --grid" in fails(run_cli(api, "sweep", "start", "--grid", "seed=1", "--random", "3"), 2)


def play_the_worker(sweeps: SweepStore, sweep_id: str, pruned: dict[int, int] | None = None) -> None:  # noqa: F811
    """Train every trial to success at once (trial k scores 0.9 + k/100), then finish the sweep with a model;
    pruned: the rung each pruned trial stopped at (every trial scored at rung 1)."""
    sweep, jobs = sweeps.get(sweep_id), sweeps.jobs
    sweeps.move(sweep_id, "running", started_at=now())
    for t in sweep.trials:
        jobs.move(t.job_id, "running", only_from={"queued"}, started_at=now())
        done = jobs.get(t.job_id).progress.model_copy(update={"epoch": 1, "fraction": 1.0})
        scores = {"echo_accuracy": 0.9 + t.trial / 100, "loss": 0.2 - t.trial / 100}
        if pruned is not None:
            jobs.update(t.job_id, rungs=[{"rung": 1, "epoch": 1, **scores}], pruned=pruned.get(t.trial))
        jobs.update(t.job_id, progress=done, metrics={"loss": 0.05}, evaluation=scores)
        jobs.move(t.job_id, "succeeded", only_from={"running"}, finished_at=now())
    best = sweep.trials[-1]
    model = {"uri": "models:/echo-rnn/7", "name": "echo-rnn", "version": "7"}
    sweeps.move(sweep_id, "succeeded", best={"trial": best.trial, "job_id": best.job_id, "model": model})


def watching(api: str, asked: list[str]) -> tuple[subprocess.Popen, str]:
    """echo-rnn sweep start --wait, once it has polled its sweep; the process and the sweep's id."""
    proc = subprocess.Popen(
        [str(ECHO_RNN), "--api", api, "sweep", "start", *TINY, "--grid", "seed=0,1,2", "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    sweep_id = proc.stdout.readline().strip()
    wait_for(lambda: f"/sweeps/{sweep_id}" in asked, 30, "the CLI polling its sweep")
    return proc, sweep_id


def test_wait_shows_the_trials_then_the_leaderboard_and_best_model(served, sweeps):  # noqa: F811
    proc, sweep_id = watching(*served)
    try:
        play_the_worker(sweeps, sweep_id)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, (stdout, stderr)
    assert f"sweep {sweep_id}: succeeded  100%  3/3 trials finished, 3 succeeded" in stdout
    ranks = [line.split()[:2] for line in stdout.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])]
    assert ranks == [["1", "2"], ["2", "1"], ["3", "0"]]
    assert f"best        trial 2 (job {sweeps.get(sweep_id).trials[2].job_id}): models:/echo-rnn/7" in stdout
    assert "held-out echo acc." in stderr and stderr.count("succeeded") >= 3 and "Traceback" not in stderr


def test_show_gives_a_halving_trials_rung_and_ranks_the_pruned_below_the_others(served, sweeps):  # noqa: F811
    api, _ = served
    sweep_id = ok(
        run_cli(
            api,
            "sweep",
            "start",
            "--param",
            "num_epochs=3",
            "--param",
            "total_series_length=1000",
            "--grid",
            "seed=0,1,2",
            "--halving",
            "1:3",
        )
    ).strip()
    play_the_worker(sweeps, sweep_id, pruned={1: 1, 2: 1})
    shown = ok(run_cli(api, "sweep", "show", sweep_id))
    rows = [line.split() for line in shown.splitlines()]
    assert [r[:4] for r in rows if r[:1] in (["0"], ["1"], ["2"]) and "succeeded" in r] == [
        ["0", "seed=0", "succeeded", "1"],
        ["1", "seed=1", "succeeded", "pruned"],
        ["2", "seed=2", "succeeded", "pruned"],
    ]
    ranks = [r[:3] for r in rows if r[:1] in (["1"], ["2"], ["3"]) and len(r) > 3 and r[2].startswith("seed=")]
    assert ranks == [
        ["1", "0", "seed=0"],
        ["2", "2", "seed=2"],
        ["3", "1", "seed=1"],
    ]  # the one that went further first
    assert "pruned at 1" in shown


def test_ctrl_c_stops_watching_not_the_sweep(served, sweeps):  # noqa: F811
    proc, sweep_id = watching(*served)
    try:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, (stdout, stderr)
    assert f"sweep {sweep_id} keeps running" in stderr and f"sweep cancel {sweep_id}" in stderr
    assert "Traceback" not in stderr and sweeps.get(sweep_id).status == "queued"
