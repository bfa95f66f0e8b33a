"""The worker's main process: its tasks import without TensorFlow, which only a job's child process loads."""

import subprocess
import sys

from tests.support import ROOT


def test_importing_the_tasks_leaves_tensorflow_to_the_children():
    code = "import sys, worker.tasks; print('tensorflow' in sys.modules)"
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False", "a module imported at start pulls TensorFlow in before the pool forks"
