"""Training speed at the tutorial's defaults: the tutorial's TF1 program, Keras and our engine, side by side.

    .venv/bin/python bench/train_speed.py            # the tutorial's defaults, about a minute
    .venv/bin/python bench/train_speed.py --quick    # a tiny configuration that only checks it runs

Each contestant trains on the same seed; (a) and (c) also start from the same initial weights and
see the same data. "setup" is graph/session construction (a), model build and compile (b), or the
first compiled window call, XLA compilation included (c); the first epoch is reported apart from the
steady state (the mean of the epochs after the first). Data generation is outside every timing.
"Engine alone" trains K models of the tutorial's shapes in one compiled loop (worker.engine.group):
steps/s counts windows per second of the loop, model-steps/s those times K, and the last column is
what a model costs there against training it alone (K = 1, which reuses the compiled loop of (c)).
The last part times the exported SavedModel's serving signature in process, one sequence per call.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: tests/

import numpy as np
import tensorflow as tf

import keras_rnn
import tutorial_tf1
from contract.params import TrainingParams
from tests.worker.engine.reference import save
from worker.engine import export
from worker.engine.data import generate_epoch
from worker.engine.group import train_group
from worker.engine.model import initial_weights
from worker.engine.train import train_model

SERVING_LENGTHS = (20, 100, 1000)
GROUP_SIZES, QUICK_GROUP_SIZES = (1, 8, 32, 128), (1, 8)


@dataclass
class Timing:
    """One contestant's numbers."""

    name: str
    epochs: int
    setup_s: float
    first_epoch_s: float
    epoch_s: list[float]  # every epoch, the first included
    final_loss: float

    @property
    def steady_s(self) -> float:
        """Mean seconds per epoch after the first."""
        return statistics.fmean(self.epoch_s[1:])


def time_tutorial(params: TrainingParams, epochs: int) -> Timing:
    """(a) The tutorial's TF1 graph and session, one session.run per window."""
    rng = np.random.default_rng(params.seed)
    t0 = time.perf_counter()
    program = tutorial_tf1.build(params, initial_weights(rng, params))
    setup = time.perf_counter() - t0
    seconds, loss = [], float("nan")
    try:
        for _ in range(epochs):
            x, y = tutorial_tf1.generate_data(rng, params)
            t0 = time.perf_counter()
            losses = tutorial_tf1.run_epoch(program, x, y)
            seconds.append(time.perf_counter() - t0)
            loss = float(np.mean(losses))
    finally:
        program.session.close()
    return Timing("(a) tutorial TF1 session", epochs, setup, seconds[0], seconds, loss)


def time_keras(params: TrainingParams, epochs: int) -> Timing:
    """(b) A stateful Keras SimpleRNN, model.fit once per epoch."""
    rng = np.random.default_rng(params.seed)
    t0 = time.perf_counter()
    model = keras_rnn.build(params, params.seed or 0)
    setup = time.perf_counter() - t0
    seconds, loss = [], float("nan")
    for _ in range(epochs):
        xs, ys = generate_epoch(rng, params)
        t0 = time.perf_counter()
        loss = keras_rnn.run_epoch(model, params, xs, ys)
        seconds.append(time.perf_counter() - t0)
    return Timing("(b) Keras SimpleRNN fit", epochs, setup, seconds[0], seconds, loss)


def time_engine(params: TrainingParams, epochs: int) -> tuple[Timing, dict[str, np.ndarray]]:
    """(c) Our engine; its own compile and per-epoch timings. Also returns the trained weights."""
    result = train_model(params.model_copy(update={"num_epochs": epochs}))
    timing = Timing(
        "(c) engine (XLA while-loop)",
        epochs,
        result.compile_seconds,
        result.epoch_seconds[0],
        result.epoch_seconds,
        result.epoch_losses[-1],
    )
    return timing, result.weights


def time_groups(params: TrainingParams, sizes: tuple[int, ...], epochs: int) -> list[tuple[int, Timing]]:
    """The engine alone: K models (seeds seed..seed+K-1) in one compiled loop, for each K of sizes."""
    timings = []
    for models in sizes:
        group = [
            params.model_copy(update={"num_epochs": epochs, "seed": (params.seed or 0) + k}) for k in range(models)
        ]
        first = train_group(group)[0]
        timings.append(
            (
                models,
                Timing(
                    f"K={models}",
                    epochs,
                    first.compile_seconds,
                    first.epoch_seconds[0],
                    first.epoch_seconds,
                    first.epoch_losses[-1],
                ),
            )
        )
    return timings


def print_groups(params: TrainingParams, timings: list[tuple[int, Timing]]) -> None:
    """The engine-alone table: one model against K models in one loop."""
    steps = params.steps_per_epoch
    print(f"\nengine alone, K models in one compiled loop ({steps} steps/epoch, the shapes above):\n")
    print(
        f"{'models':>7}{'setup s':>10}{'steady s/epoch':>16}{'steps/s':>11}{'model-steps/s':>15}"
        f"{'per model vs K=1':>18}"
    )
    single = steps / timings[0][1].steady_s
    for models, t in timings:
        rate = steps / t.steady_s
        print(
            f"{models:>7}{t.setup_s:>10.3f}{t.steady_s:>16.4f}{rate:>11.0f}{models * rate:>15.0f}"
            f"{models * rate / single:>17.1f}x"
        )


def serving_latency(weights: dict[str, np.ndarray], echo_step: int, calls: int) -> dict[int, float]:
    """p50 milliseconds of one serving-signature call on one sequence, per length, after a warm-up."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as path:
        save(export.build(weights, echo_step), path)
        serve = tf.saved_model.load(path).signatures["serving_default"]
        p50 = {}
        for length in SERVING_LENGTHS:
            sequence = tf.constant(rng.integers(0, 2, size=(1, length), dtype=np.int32))
            for _ in range(5):
                serve(sequences=sequence)["output_0"].numpy()
            samples = []
            for _ in range(calls):
                t0 = time.perf_counter()
                serve(sequences=sequence)["output_0"].numpy()
                samples.append(time.perf_counter() - t0)
            p50[length] = 1000 * statistics.median(samples)
    return p50


def seeds_that_learn(seeds: int, epochs: int, series: int) -> dict[str, int]:
    """Per init: how many of seeds 0..seeds-1 reach a loss ≤ 0.01 within the epochs (defaults otherwise)."""
    return {
        init: sum(
            min(
                train_model(
                    TrainingParams(num_epochs=epochs, total_series_length=series, seed=seed, init=init, device="cpu")
                ).epoch_losses
            )
            <= 0.01
            for seed in range(seeds)
        )
        for init in ("tutorial", "glorot")
    }


def print_table(params: TrainingParams, timings: list[Timing]) -> None:
    """The side-by-side table."""
    steps = params.steps_per_epoch
    print(
        f"\nechoRNN at total_series_length={params.total_series_length}, "
        f"truncated_backprop_length={params.truncated_backprop_length}, state_size={params.state_size}, "
        f"batch_size={params.batch_size}, echo_step={params.echo_step}: {steps} steps/epoch, "
        f"seed {params.seed}, CPU threads {os.cpu_count()}\n"
    )
    header = f"{'contestant':<30}{'epochs':>7}{'setup s':>10}{'1st epoch s':>13}"
    print(header + f"{'steady s/epoch':>16}{'steps/s':>11}{'final loss':>12}")
    for t in timings:
        print(
            f"{t.name:<30}{t.epochs:>7}{t.setup_s:>10.3f}{t.first_epoch_s:>13.3f}"
            f"{t.steady_s:>16.4f}{steps / t.steady_s:>11.0f}{t.final_loss:>12.4f}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny configuration: only checks it runs")
    parser.add_argument("--epochs", type=int, help="epochs for (a) and (b) (default 3; quick 2)")
    parser.add_argument("--engine-epochs", type=int, help="epochs for (c) (default 10; quick 2)")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--serving-calls", type=int, help="timed calls per length (default 300; quick 20)")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (2 if args.quick else 3)
    args.engine_epochs = args.engine_epochs or (2 if args.quick else 10)
    args.serving_calls = args.serving_calls or (20 if args.quick else 300)
    if min(args.epochs, args.engine_epochs) < 2:
        parser.error("at least 2 epochs each: the steady state is the epochs after the first")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the three contestants and the serving latency; print the table and the ratios."""
    args = parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # TF1 deprecation notices from the tutorial's optimizer
    series = 7_500 if args.quick else TrainingParams().total_series_length
    params = TrainingParams(total_series_length=series, seed=args.seed, device="cpu")
    tutorial = time_tutorial(params, args.epochs)
    keras_timing = time_keras(params, args.epochs)
    engine, weights = time_engine(params, args.engine_epochs)
    print_table(params, [tutorial, keras_timing, engine])
    print_groups(params, time_groups(params, QUICK_GROUP_SIZES if args.quick else GROUP_SIZES, args.engine_epochs))
    p50 = serving_latency(weights, params.echo_step, args.serving_calls)
    print("\nserving (SavedModel signature, in process, one sequence per call, p50):")
    for length, ms in p50.items():
        print(f"  length {length:>5}: {ms:.3f} ms {'(target ≤ 1 ms)' if ms <= 1.0 else '(over 1 ms target)'}")
    seeds, epochs = (2, 1) if args.quick else (20, 5)
    learned = seeds_that_learn(seeds, epochs, series)
    print(
        f"\nlearns the echo (an epoch's loss ≤ 0.01) within {epochs} epochs, seeds 0–{seeds - 1}: "
        + ", ".join(f"init={init} {count}/{seeds}" for init, count in learned.items())
    )
    print(f"\nKeras speedup vs seed reference: {tutorial.steady_s / keras_timing.steady_s:.1f}x")
    print(f"engine speedup vs Keras: {keras_timing.steady_s / engine.steady_s:.1f}x")
    print(f"train speedup vs seed reference: {tutorial.steady_s / engine.steady_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
