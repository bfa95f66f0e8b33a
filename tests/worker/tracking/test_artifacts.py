"""Uploading a folder's files to a run's artifact location on the real MLflow server, a few at once."""

from pathlib import Path

from worker.tracking import artifacts


def test_every_file_lands_at_its_path_below_the_folder_given(client, run_id, tmp_path, mlflow_url):
    files = {"a.txt": b"a", "sub/b.bin": bytes(range(256)), "sub/deeper/c.csv": b"step,loss\n"}
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    location = client.get_run(run_id).info.artifact_uri
    artifacts.upload(location, mlflow_url, tmp_path, "under")
    artifacts.upload(location, mlflow_url, tmp_path / "sub" / "deeper")
    listed = {a.path for a in client.list_artifacts(run_id, "under/sub")}
    assert listed == {"under/sub/b.bin", "under/sub/deeper"}
    for name, content in files.items():
        assert Path(client.download_artifacts(run_id, f"under/{name}", str(tmp_path / "down"))).read_bytes() == content
    assert [a.path for a in client.list_artifacts(run_id) if not a.is_dir] == ["c.csv"]
