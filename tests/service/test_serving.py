"""The API serves a model without TensorFlow: an API process that loaded one and answered has never imported it."""

import json
import subprocess
import sys

from tests.support import ROOT

CODE = """
import json, sys, time
import numpy as np
from service.app import create_app
from service.settings import Settings
app = create_app(Settings(redis_url=sys.argv[1], mlflow_tracking_uri=sys.argv[2]))
models = app.extensions["echo"].models
t0 = time.perf_counter()
info, model = models.get(sys.argv[3])
load_ms = 1000 * (time.perf_counter() - t0)
p_one = model.predict(np.array([[0, 1, 1, 0, 1, 0, 0, 1, 1, 1]], np.int32))
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "load_ms": load_ms, "shape": list(p_one.shape),
                  "echo_step": model.echo_step}))
"""


def test_an_api_process_loads_and_serves_a_model_without_importing_tensorflow(stack, trained_job):
    done = subprocess.run(
        [sys.executable, "-c", CODE, stack.env["REDIS_URL"], stack.mlflow, trained_job["model"]["uri"]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["tensorflow"] is False, "the API imported TensorFlow"
    assert answer["shape"] == [1, 10] and answer["echo_step"] == trained_job["params"]["echo_step"]
