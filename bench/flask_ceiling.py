"""The cost of a Flask route on this machine: GET /predict answering the echo computed in Python, no model.

Served by granian with the API's process count (bench/serve_speed.py starts it), it is the ceiling a
Flask API can reach for this request: our API's share of its requests/s says how much of the rest
is ours to cut.
"""

from flask import Flask, jsonify, request

ECHO_STEP = 3
app = Flask(__name__)


@app.get("/predict")
def predict():
    """The echo of ?sequence=: each bit echo_step positions later, as certain probabilities."""
    bits = request.args["sequence"]
    echo = "0" * ECHO_STEP + bits[: len(bits) - ECHO_STEP]
    return jsonify(
        model={"uri": request.args.get("model")},
        sequence=bits,
        echo=echo,
        probabilities=[float(b) for b in echo],
        echo_step=ECHO_STEP,
    )
