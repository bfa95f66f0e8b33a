"""The parent run's figure of a halving sweep: each trial's held-out echo accuracy at each rung it reached."""

import io

from contract.sweep_record import Trial


def points(trial: Trial) -> tuple[list[int], list[float]]:
    """Epochs and held-out echo accuracies: each rung's, then (a trial that was not pruned) its final evaluation."""
    epochs, accuracies = [r.epoch for r in trial.rungs], [r.echo_accuracy for r in trial.rungs]
    if not trial.pruned and trial.evaluation is not None and trial.epoch not in epochs:
        epochs.append(trial.epoch)
        accuracies.append(trial.evaluation.echo_accuracy)
    return epochs, accuracies


def rung_figure(trials: list[Trial], highlighted: list[int]) -> bytes:
    """A line per trial over the epochs of its rungs (an x where it was pruned), the best five in colour."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for trial in sorted(trials, key=lambda t: t.trial in highlighted):  # the highlighted drawn last, on top
        epochs, accuracies = points(trial)
        if not epochs:
            continue
        marker = "x" if trial.pruned else "o"
        if trial.trial in highlighted:
            ax.plot(
                epochs,
                accuracies,
                marker=marker,
                linewidth=2,
                label=f"trial {trial.trial} (#{highlighted.index(trial.trial) + 1})",
            )
        else:
            ax.plot(epochs, accuracies, marker=marker, linewidth=0.7, markersize=4, color="grey", alpha=0.5)
    pruned = sum(t.pruned for t in trials)
    ax.set_title(
        f"held-out echo accuracy at each rung: {len(trials)} trials, {pruned} pruned (x), the best five in colour"
    )
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("held-out echo accuracy")
    if highlighted:
        ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
