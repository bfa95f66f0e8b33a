"""The API serves a model without TensorFlow: an API process (its WSGI entry point) that loaded one and answered
has imported neither TensorFlow nor the data stacks MLflow would load when installed, and stays small."""

import json
import subprocess
import sys

from tests.support import ROOT

CODE = """
import json, sys, time
import numpy as np
from service.lean import KEPT_OUT
from service.wsgi import app
models = app.extensions["echo"].models
t0 = time.perf_counter()
info, model = models.get(sys.argv[1])
load_ms = 1000 * (time.perf_counter() - t0)
p_one = model.predict(np.array([[0, 1, 1, 0, 1, 0, 0, 1, 1, 1]], np.int32))
print(json.dumps({"loaded": [m for m in KEPT_OUT if sys.modules.get(m) is not None], "load_ms": load_ms,
                  "shape": list(p_one.shape), "echo_step": model.echo_step,
                  "rss_kib": next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))}))
"""


def test_an_api_process_loads_and_serves_a_model_without_importing_tensorflow(stack, trained_job):
    env = {**stack.env, "MLFLOW_TRACKING_URI": stack.mlflow}
    done = subprocess.run(
        [sys.executable, "-c", CODE, trained_job["model"]["uri"]],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["loaded"] == [], "the API process loaded what it keeps out"
    assert answer["rss_kib"] < 200 * 1024, answer  # resident with a model loaded: about 145 MiB measured
    assert answer["shape"] == [1, 10] and answer["echo_step"] == trained_job["params"]["echo_step"]
