"""The echo-rnn console script, run as a subprocess against the real running API."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, free_port, submit, wait_status

ECHO_RNN = Path(sys.executable).parent / "echo-rnn"
FINISHED = {"succeeded", "failed", "cancelled"}
LONG = ("--epochs", "2000", "--seed", "5")  # minutes of training: still running when cancelled


def env(**extra: str) -> dict[str, str]:
    """The environment without the CLI's own variables or forced colours, plus extra."""
    drop = {"ECHO_RNN_API", "ECHO_RNN_TOKEN", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def cli(api: str | None, *args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
    """Run echo-rnn (with --api when given) and return its result."""
    head = [str(ECHO_RNN)] + (["--api", api] if api else [])
    return subprocess.run(head + list(args), capture_output=True, text=True, timeout=timeout, env=env(**extra_env))


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def fails(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def test_train_wait_shows_progress_then_model_and_run(stack):
    result = cli(stack.api, "train", "--epochs", "2", "--seed", "1", "--wait", timeout=300)
    stdout = ok(result)
    job_id = stdout.splitlines()[0].strip()
    job = wait_status(stack.api, job_id, FINISHED, timeout=5)
    assert job["status"] == "succeeded" and job["params"]["num_epochs"] == 2 and job["params"]["seed"] == 1
    assert job["model"]["uri"].startswith("models:/echo-rnn/") and f"model       {job['model']['uri']}" in stdout
    assert f"mlflow run  {job['mlflow']['url']}" in stdout
    assert f"evaluation  echo accuracy {job['evaluation']['echo_accuracy']:.4g}" in stdout and "1000 bits" in stdout
    assert "champion    promoted: " in stdout or "champion    not promoted: " in stdout
    assert "epoch 2/2" in result.stderr and "ETA" in result.stderr and "loss" in result.stderr


def test_train_sends_only_given_options_then_cancel_jobs_and_show(stack):
    job_id = ok(cli(stack.api, "train", *LONG, "--window", "10", "--learning-rate", "0.5")).strip()
    submitted = wait_status(stack.api, job_id, {"queued", "running"} | FINISHED, timeout=5)
    params = submitted["params"]
    assert (params["truncated_backprop_length"], params["learning_rate"], params["state_size"]) == (10, 0.5, 4)

    assert job_id in ok(cli(stack.api, "cancel", job_id))
    assert wait_status(stack.api, job_id, FINISHED, timeout=120)["status"] == "cancelled"
    again = fails(cli(stack.api, "cancel", job_id), 1)
    assert f"error: Conflict: job {job_id} has already cancelled" in again

    listing = ok(cli(stack.api, "jobs", "--status", "cancelled", "--limit", "100"))
    row = next(line for line in listing.splitlines() if job_id in line)
    assert "cancelled" in row and "/2000" in row
    assert job_id not in ok(cli(stack.api, "jobs", "--status", "succeeded", "--limit", "100"))
    first = ok(cli(stack.api, "jobs", "--limit", "1"))
    assert len([line for line in first.splitlines() if line.strip()]) == 2  # header and one job
    assert "echo-rnn jobs --cursor" in cli(stack.api, "jobs", "--limit", "1").stderr

    shown = ok(cli(stack.api, "show", job_id))
    assert f"job         {job_id}" in shown and "status      cancelled" in shown and "num_epochs=2000" in shown
    assert json.loads(ok(cli(stack.api, "show", job_id, "--json")))["id"] == job_id


def test_ctrl_c_while_waiting_leaves_the_job_running(stack):
    proc = subprocess.Popen(
        [str(ECHO_RNN), "--api", stack.api, "train", *LONG, "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        job_id = proc.stdout.readline().strip()
        wait_status(stack.api, job_id, {"running"}, timeout=120)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (stdout, stderr)
    assert f"job {job_id} keeps running" in stderr and f"cancel {job_id}" in stderr and "Traceback" not in stderr
    assert wait_status(stack.api, job_id, FINISHED | {"running"}, timeout=5)["status"] == "running"
    assert "cancel requested" in ok(cli(stack.api, "cancel", job_id))
    assert wait_status(stack.api, job_id, FINISHED, timeout=120)["status"] == "cancelled"


# Follows a job again and again, pressing Ctrl-C (a real SIGINT) the moment the k-th lock taken by a call
# returns: its caller holds it and is not yet inside a with or try. A KeyboardInterrupt there leaves it held
# (urllib3's pool queue, in Condition.__enter__, is one), and the follower must still stop at once.
SWEEP = """
import _thread, faulthandler, signal, sys
import typer
from service.cli import follow
from service.cli.api import Api

api, job_id, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
follow.POLL_S = 0.05  # several polls within the locks swept
for k in range(1, trials + 1):
    left = [k]

    def hook(frame, event, arg):
        if (event == "c_return" and getattr(arg, "__name__", "") in ("acquire", "__enter__")
                and isinstance(getattr(arg, "__self__", None), (_thread.LockType, _thread.RLock))):
            left[0] -= 1
            if not left[0]:
                sys.setprofile(None)
                signal.raise_signal(signal.SIGINT)

    client = Api(api)
    job = client.call("GET", f"/jobs/{job_id}")
    faulthandler.dump_traceback_later(10, exit=True)  # a hang: every thread's stack on stderr, exit 1
    sys.setprofile(hook)
    try:
        follow.follow(client, job)
        code = "returned"
    except typer.Exit as exc:
        code = exc.exit_code
    except KeyboardInterrupt:
        code = "KeyboardInterrupt"
    sys.setprofile(None)
    faulthandler.cancel_dump_traceback_later()
    print(k, code, left[0], flush=True)
"""


def test_ctrl_c_while_a_lock_is_held_still_stops_following_at_once(stack):
    job_id = submit(stack.api, num_epochs=2000, seed=6)["id"]
    try:
        sweep = subprocess.run(
            [sys.executable, "-c", SWEEP, stack.api, job_id, "40"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env(),
            cwd=ROOT,
        )
    finally:
        ok(cli(stack.api, "cancel", job_id))
    assert sweep.returncode == 0, (sweep.stdout, sweep.stderr[-4000:])
    rows = [line.split() for line in sweep.stdout.splitlines()]
    assert rows == [[str(k), "130", "0"] for k in range(1, 41)], sweep.stdout
    assert sweep.stderr.count(f"job {job_id} keeps running") == 40 and "Traceback" not in sweep.stderr
    assert wait_status(stack.api, job_id, FINISHED, timeout=120)["status"] == "cancelled"


def test_predict_lines_up_input_and_echo(stack, trained_job):
    bits = "".join(random.Random(7).choice("01") for _ in range(200))
    stdout = ok(cli(stack.api, "predict", bits, "--model", trained_job["id"]))
    lines = stdout.splitlines()
    assert trained_job["model"]["uri"] in lines[0] and "echo_step 3" in lines[0]
    given, echo = (next(line for line in lines if line.startswith(label)) for label in ("input ", "echo "))
    start = given.index(bits)
    assert echo[:start].strip() == "echo" and len(echo) == len(given) == start + len(bits)
    echoed = echo[start:]
    right = sum(echoed[i] == bits[i - 3] for i in range(3, len(bits)))
    assert right >= 0.98 * (len(bits) - 3), (bits, echoed)

    raw = json.loads(ok(cli(stack.api, "predict", "0110", "1", "--model", trained_job["model"]["uri"], "--json")))
    assert [r["sequence"] for r in raw["results"]] == ["0110", "1"]
    several = ok(cli(stack.api, "predict", "0110", "101101", "--model", trained_job["id"]))
    assert "input  0110" in several and "input  101101" in several and several.count("\necho   ") == 2
    bad = fails(cli(stack.api, "predict", "0120"), 1)
    assert "error: Invalid request" in bad and "sequence:" in bad


def test_models_lists_the_registered_versions(stack, trained_job):
    stdout = ok(cli(stack.api, "models"))
    row = next(line for line in stdout.splitlines() if trained_job["id"] in line)
    assert row.split()[0] == trained_job["model"]["version"] and trained_job["mlflow"]["run_id"] in row
    assert "echo_accuracy" in stdout.splitlines()[0]


def test_invalid_parameter_names_the_field_and_option(stack):
    stderr = fails(cli(stack.api, "train", "--epochs", "0"), 1)
    assert "error: Invalid request: invalid body: num_epochs" in stderr
    assert "num_epochs (--epochs): Input should be greater than or equal to 1" in stderr
    assert "--device" in fails(cli(stack.api, "train", "--device", "tpu"), 1)
    assert "Invalid value" in fails(cli(stack.api, "train", "--epochs", "many"), 2)


def test_unknown_job_is_an_error(stack):
    stderr = fails(cli(stack.api, "show", "no-such-job", ECHO_RNN_TOKEN="s3cret-token"), 1)
    assert stderr.strip() == "error: Not Found: no job no-such-job"
    assert "s3cret" not in stderr
    assert "no job" in fails(cli(stack.api, "cancel", "no-such-job"), 1)


@pytest.mark.parametrize("command", [["jobs"], ["train", "--epochs", "1"], ["predict", "0101"], ["models"]])
def test_dead_api_exits_3_with_a_clear_message(command):
    dead = f"http://127.0.0.1:{free_port()}"
    stderr = fails(cli(None, *command, ECHO_RNN_API=dead), 3)
    assert stderr.strip() == f"error: cannot reach the API at {dead} (is it running? make run)"


def test_api_option_must_be_a_url():
    assert "not an http:// or https:// URL" in fails(cli("localhost:8000", "jobs", COLUMNS="200"), 2)


def test_help_lists_commands_and_exit_codes():
    stdout = ok(cli(None, "--help"))
    for word in ("train", "jobs", "show", "cancel", "predict", "models", "--api", "--token", "Exit codes", "130"):
        assert word in stdout
    assert "--truncated-backprop-length" in ok(cli(None, "train", "--help", COLUMNS="200"))
