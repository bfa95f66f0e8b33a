"""TrackedRun: one job's MLflow run on the real server, opened, reopened, written and closed."""

import gzip
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from worker.tracking.mlflow_retry import MlflowUnavailable
from worker.tracking.tracked_run import TrackedRun, loss_history_csv

PARAMS = {"num_epochs": 3, "learning_rate": 0.3, "device": "cpu"}


@pytest.fixture
def job_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def logger(settings, job_id) -> Iterator[TrackedRun]:
    """A new run of a new job (left RUNNING unless the test ends it)."""
    logger = TrackedRun(settings, job_id, PARAMS)
    yield logger
    logger.sender.stop()


def test_a_new_run_is_tagged_with_the_job_and_holds_its_parameters(logger, client, job_id, settings):
    run = client.get_run(logger.run_id)
    assert run.info.status == "RUNNING" and run.info.run_name == f"job-{job_id[:8]}"
    assert run.data.tags["job_id"] == job_id
    assert run.data.params == {k: str(v) for k, v in PARAMS.items()}
    assert run.info.experiment_id == logger.experiment_id
    assert client.get_experiment(logger.experiment_id).name == settings.mlflow_experiment
    assert len(client.search_runs([logger.experiment_id], f"tags.job_id = '{job_id}'")) == 1


def test_jobs_share_the_experiment_and_each_has_a_run_of_its_own(logger, settings):
    other = TrackedRun(settings, str(uuid.uuid4()), PARAMS)
    other.sender.stop()
    assert other.experiment_id == logger.experiment_id and other.run_id != logger.run_id


def test_the_experiment_is_created_when_missing(settings, client):
    fresh = settings.model_copy(update={"mlflow_experiment": f"worker-tests-{uuid.uuid4().hex[:8]}"})
    assert client.get_experiment_by_name(fresh.mlflow_experiment) is None
    logger = TrackedRun(fresh, str(uuid.uuid4()), PARAMS)
    logger.sender.stop()
    assert client.get_experiment_by_name(fresh.mlflow_experiment).experiment_id == logger.experiment_id


def test_reopening_a_run_by_id_creates_no_run_and_logs_no_parameters_again(logger, settings, client, job_id):
    # Different values: logging a parameter again with another value is an error on the server.
    reopened = TrackedRun(settings, job_id, {**PARAMS, "num_epochs": 99, "extra": 1}, run_id=logger.run_id)
    reopened.sender.stop()
    assert reopened.run_id == logger.run_id and reopened.experiment_id == logger.experiment_id
    assert client.get_run(logger.run_id).data.params == {k: str(v) for k, v in PARAMS.items()}
    assert len(client.search_runs([logger.experiment_id], f"tags.job_id = '{job_id}'")) == 1


def test_added_points_are_on_the_server_after_flush(logger, client):
    logger.add("loss", [0.7, 0.6, 0.5], 0)
    logger.add("loss", [0.4], 3)
    logger.add("epoch_loss", [0.55], 1)
    logger.flush()
    assert sorted((m.step, m.value) for m in client.get_metric_history(logger.run_id, "loss")) == [
        (0, 0.7),
        (1, 0.6),
        (2, 0.5),
        (3, 0.4),
    ]
    assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "epoch_loss")] == [(1, 0.55)]


def test_logged_count_is_the_number_of_steps_the_run_holds(logger):
    assert logger.logged_count("loss") == 0
    logger.add("loss", np.linspace(1, 0, 7), 0)
    logger.flush()
    assert logger.logged_count("loss") == 7
    logger.add("loss", [0.33], 6)  # a step the run holds, sent again with another value
    logger.flush()
    assert logger.logged_count("loss") == 7 and logger.logged_count("epoch_loss") == 0


def test_log_artifacts_uploads_the_files(logger, client, tmp_path):
    files = {"loss_history.csv": b"step,loss\n0,0.5\n", "notes.txt": "é\n".encode()}
    logger.log_artifacts(files)
    assert {a.path for a in client.list_artifacts(logger.run_id)} == set(files)
    local = client.download_artifacts(logger.run_id, "notes.txt", str(tmp_path))
    assert Path(local).read_bytes() == files["notes.txt"]


def test_flush_waits_for_artifacts_logged_later(logger, client):
    logger.log_artifacts_later(lambda: {"later.csv": loss_history_csv(np.array([0.5, 0.25]))})
    logger.flush()
    assert [a.path for a in client.list_artifacts(logger.run_id)] == ["later.csv"]


def test_a_figure_is_logged_as_an_image_at_its_step(logger, client):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 2, (5, 15)), rng.integers(0, 2, (5, 15))
    probabilities = rng.random((5, 15, 2))
    logger.add_figure(np.linspace(0.7, 0.1, 40), (x, y, probabilities), 40)
    logger.flush()
    images = [a.path for a in client.list_artifacts(logger.run_id, "images")]
    assert images and all(re.match(r"images/echo_figure[%+]step[%+]40[%+]", path) for path in images), images
    # As MLflow's log_image writes it (its UI's image card reads these): the PNG and a 256-pixel WebP preview.
    [png] = [p for p in images if p.endswith(".png")]
    preview = png[: -len(".png")] + "+compressed.webp"
    assert sorted(images) == sorted([png, preview])
    assert client.get_run(logger.run_id).data.tags["mlflow.loggedImages"] == "True"
    from PIL import Image

    from worker.engine.figure import render

    local = client.download_artifacts(logger.run_id, png)
    assert Path(local).read_bytes() == render(np.linspace(0.7, 0.1, 40), x, y, probabilities), "uploaded as drawn"
    assert max(Image.open(client.download_artifacts(logger.run_id, preview)).size) == 256


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_end_flushes_and_closes_the_run_with_its_status(settings, client, status):
    logger = TrackedRun(settings, str(uuid.uuid4()), PARAMS)
    logger.add("loss", [0.5, 0.4], 0)
    logger.end(status)
    run = client.get_run(logger.run_id)
    assert run.info.status == status and run.info.end_time is not None and logger.ended == status
    assert len(client.get_metric_history(logger.run_id, "loss")) == 2
    assert not logger.sender._thread.is_alive()


def test_abandon_stops_sending_and_leaves_the_run_open_for_the_next_worker(logger, client):
    logger.abandon()
    assert not logger.sender._thread.is_alive() and logger.ended is None
    assert client.get_run(logger.run_id).info.status == "RUNNING"


def test_the_url_is_the_runs_page_under_the_public_ui(logger, settings):
    assert logger.url == f"{settings.mlflow_tracking_uri}/#/experiments/{logger.experiment_id}/runs/{logger.run_id}"
    logger.settings = settings.model_copy(update={"mlflow_ui_url": "https://mlflow.example.com/"})
    assert logger.url == f"https://mlflow.example.com/#/experiments/{logger.experiment_id}/runs/{logger.run_id}"


def test_opening_a_run_on_an_unreachable_server_gives_up_past_the_retry_limit(fail_fast_mlflow, closed_port, settings):
    gone = settings.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{closed_port}", "mlflow_retry_s": 0.3})
    with pytest.raises(
        MlflowUnavailable,
        match=rf"^MLflow at http://127.0.0.1:{closed_port} unreachable .* while finding the experiment",
    ):
        TrackedRun(gone, str(uuid.uuid4()), PARAMS)


def test_reopening_a_run_that_does_not_exist_fails_at_once(settings):
    with pytest.raises(Exception, match=r"RESOURCE_DOES_NOT_EXIST|not found") as raised:
        TrackedRun(settings, str(uuid.uuid4()), PARAMS, run_id="0" * 32)
    assert not isinstance(raised.value, MlflowUnavailable)


def test_once_mlflow_refused_the_points_flush_and_add_raise(logger, client):
    logger.add("loss", [0.5], 0)
    client.delete_run(logger.run_id)  # the server refuses points for a deleted run
    with pytest.raises(MlflowUnavailable, match=r"^MLflow did not accept metrics"):
        logger.flush()
    with pytest.raises(MlflowUnavailable):
        logger.add("loss", [0.1], 1)
    with pytest.raises(MlflowUnavailable):
        logger.check()


def test_loss_history_csv_has_a_row_per_step_gzipped():
    assert (
        gzip.decompress(loss_history_csv(np.array([0.693147, 0.5, 1e-7], np.float32)))
        == b"step,loss\n0,0.693147\n1,0.5\n2,1e-07\n"
    )
    assert gzip.decompress(loss_history_csv(np.array([]))) == b"step,loss\n"


def test_a_run_with_params_later_sends_them_with_its_first_points_in_its_experiment(settings, client, logger, job_id):
    """A sweep's trial: created in its parent's experiment (no lookup), its parameters beside its first points."""
    other = client.create_experiment(f"worker-tests-{uuid.uuid4().hex[:8]}")
    later = TrackedRun(settings, job_id, PARAMS, experiment_id=other, params_later=True)
    try:
        assert later.experiment_id == other and client.get_run(later.run_id).info.experiment_id == other
        assert client.get_run(later.run_id).data.params == {}, "not sent yet: they go with the first batch"
        later.add("loss", [0.5], 0)
        later.flush()
        assert client.get_run(later.run_id).data.params == {k: str(v) for k, v in PARAMS.items()}
    finally:
        later.sender.stop()


def test_reopening_a_run_that_holds_no_parameters_sends_them(settings, client, logger, job_id):
    """An attempt lost before its first batch left a run without parameters: the next one sends them."""
    bare = client.create_run(logger.experiment_id).info.run_id
    reopened = TrackedRun(settings, job_id, PARAMS, run_id=bare, params_later=True)
    try:
        reopened.flush()
        assert client.get_run(bare).data.params == {k: str(v) for k, v in PARAMS.items()}
    finally:
        reopened.sender.stop()


def test_tags_set_later_go_with_the_next_points(logger, client):
    logger.tag_later({"pruned": "true", "pruned_rung": "2"})
    logger.add("loss", [0.5], 0)
    logger.flush()
    tags = client.get_run(logger.run_id).data.tags
    assert (tags["pruned"], tags["pruned_rung"]) == ("true", "2")


def test_closing_a_run_prints_nothing_and_reads_nothing_back(settings, client, capsys, monkeypatch):
    """MLflow's client would read the run back to print its link: a request per run, two lines in the log."""
    for name, value in settings.mlflow_client_environment().items():
        monkeypatch.setenv(name, value)
    logger = TrackedRun(settings, str(uuid.uuid4()), PARAMS)
    reads: list[str] = []
    store = logger.client._tracking_client.store  # MLflow's clients of one server share it
    original = store.get_run
    monkeypatch.setattr(store, "get_run", lambda run_id: reads.append(run_id) or original(run_id))
    logger.end("FINISHED")
    assert not reads and "View run" not in capsys.readouterr().out
    assert client.get_run(logger.run_id).info.status == "FINISHED"
