"""The sweep's figures, drawn with matplotlib's object API into PNG files (no display, no
pyplot state, nothing fetched when opened).

Axes follow the course's scales: learning rate and 1 − β on log axes, each parameter of the
parallel-coordinates plot in its scaled coordinate (log10 α, log10(1 − β), log2 of a size).
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import optuna
import optuna.importance  # loads scikit-learn (~2 s): see Recorder, which imports this early
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from optuna.trial import FrozenTrial, TrialState

from sweeper.results.view import SweepView, is_warm_start
from sweeper.spec import scales

STAGE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def optimization_history(view: SweepView) -> Figure:
    """The objective of every completed trial, stage after stage, and the best so far."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    done = sorted(
        (r for r in view.rows if r.state == "COMPLETE"),
        key=lambda r: (_stage_index(view, r.stage), r.number),
    )
    best, running = None, []
    for i, row in enumerate(done):
        colour = STAGE_COLOURS[_stage_index(view, row.stage) % len(STAGE_COLOURS)]
        ax.scatter(i, row.value, s=14, color=colour)
        improves = best is None or (row.value > best if view.maximize else row.value < best)
        best = row.value if improves else best
        running.append(best)
    ax.plot(range(len(running)), running, color="black", linewidth=1, label="best so far")
    for i, stage in enumerate(view.spaces):
        ax.scatter([], [], color=STAGE_COLOURS[i % len(STAGE_COLOURS)], label=stage)
    ax.set(
        xlabel="completed trial", ylabel=view.spec.objective.metric, title="Optimization history"
    )
    ax.legend(loc="best", fontsize="small")
    return figure


def parallel_coordinates(view: SweepView, stage: str) -> Figure:
    """Each completed trial of `stage` as a line across its parameters' scaled coordinates."""
    space = view.spaces[stage]
    names = [n for n, p in space.items() if p.scale != "categorical"]
    rows = view.ranked(stage)
    figure = Figure(figsize=(max(5, 1.6 * len(names)), 4), layout="constrained")
    ax = figure.add_subplot()
    if rows and names:
        values = [r.value for r in rows]
        shade = Normalize(min(values), max(values) + 1e-12)
        colours = ScalarMappable(shade, colormaps["viridis"])
        figure.colorbar(colours, ax=ax).set_label(view.spec.objective.metric)
        for row in reversed(rows):  # best drawn last, on top
            ys = [_unit(space[n], row.params.get(n)) for n in names]  # NaN: a layer it lacks
            ax.plot(range(len(names)), ys, color=colours.to_rgba(row.value), linewidth=1)
    ax.set_xticks(range(len(names)), [_axis_label(n, space[n]) for n in names], fontsize="small")
    ax.set(ylabel="position in the stage's box (scaled)", title=f"Parallel coordinates: {stage}")
    return figure


def importances(view: SweepView, stage: str, trials: list[FrozenTrial]) -> Figure:
    """PED-ANOVA importance of each parameter for the objective (needs ≥ 2 completed trials):
    how much each parameter's distribution differs between the top trials and the rest. The
    stage's own trials, as every other figure: its warm-start copies are the previous stage's
    trials, valued at another budget."""
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    ax = figure.add_subplot()
    study = optuna.create_study(direction=view.spec.objective.direction)
    study.add_trials([t for t in trials if t.state == TrialState.COMPLETE and not is_warm_start(t)])
    try:
        with warnings.catch_warnings():  # "importances will be equal" on tiny stages
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
    except (RuntimeError, ValueError) as error:  # too few trials, or a single parameter value
        ax.text(0.5, 0.5, f"not enough trials: {error}", ha="center", wrap=True)
        found = {}
    names = list(found)[::-1]
    ax.barh(names, [found[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (PED-ANOVA)", title=f"Hyperparameter importances: {stage}")
    return figure


def learning_curves(view: SweepView, stage: str, top: int = 5) -> Figure:
    """Dev metric per epoch of the top completed trials and of up to `top` pruned ones."""
    metric = view.spec.objective.metric
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    pruned = [r for r in view.rows if r.stage == stage and r.state == "PRUNED"][:top]
    for rows, style, kind in ((view.ranked(stage)[:top], "-", "top"), (pruned, ":", "pruned")):
        for row in rows:
            curve = [epoch.get(metric) for epoch in row.history]
            ax.plot(range(1, len(curve) + 1), curve, style, label=f"{kind} #{row.number}")
    ax.set(xlabel="epoch", ylabel=metric, title=f"Learning curves: {stage}")
    if ax.lines:
        ax.legend(fontsize="x-small", ncols=2)
    return figure


def lr_vs_one_minus_beta(view: SweepView) -> Figure | None:
    """Learning rate vs 1 − β on log axes, coloured by the objective, each zoomed stage's box
    drawn on it. None when the sweep does not search both."""
    first = next(iter(view.spaces.values()), {})
    if not {"learning_rate", "beta"} <= set(first):
        return None
    rows = [r for r in view.rows if r.state == "COMPLETE"]
    pruned = [r for r in view.rows if r.state == "PRUNED"]
    figure = Figure(figsize=(6.5, 5), layout="constrained")
    ax = figure.add_subplot()
    lr, beta = first["learning_rate"], first["beta"]
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate α",
        ylabel="1 − β",
        xlim=(lr.low, lr.high),
        ylim=(1 - beta.high, 1 - beta.low),
    )
    ax.scatter(
        [r.params["learning_rate"] for r in pruned],
        [1 - r.params["beta"] for r in pruned],
        marker="x",
        color="grey",
        s=18,
        label="pruned",
    )
    if rows:
        dots = ax.scatter(
            [r.params["learning_rate"] for r in rows],
            [1 - r.params["beta"] for r in rows],
            c=[r.value for r in rows],
            cmap="viridis",
            s=22,
        )
        figure.colorbar(dots, ax=ax).set_label(view.spec.objective.metric)
    for i, (stage, space) in enumerate(view.spaces.items()):
        if i == 0:
            continue
        lr, beta = space["learning_rate"], space["beta"]
        ax.add_patch(
            Rectangle(
                (lr.low, 1 - beta.high),
                lr.high - lr.low,
                beta.high - beta.low,
                fill=False,
                edgecolor=STAGE_COLOURS[i % len(STAGE_COLOURS)],
                linewidth=1.5,
                label=f"{stage} box",
            )
        )
    ax.set_title("Learning rate vs 1 − β")
    ax.legend(fontsize="small")
    return figure


def sweep_figures(view: SweepView) -> dict[str, Figure]:
    """File name → figure, for the sweep as a whole."""
    figures = {"optimization_history.png": optimization_history(view)}
    scatter = lr_vs_one_minus_beta(view)
    if scatter is not None:
        figures["lr_vs_one_minus_beta.png"] = scatter
    return figures


def stage_figures(view: SweepView, stage: str, trials: list[FrozenTrial]) -> dict[str, Figure]:
    """File name → figure, for one stage (`trials`: its study's trials, for importances)."""
    return {
        f"{stage}_parallel_coordinates.png": parallel_coordinates(view, stage),
        f"{stage}_importances.png": importances(view, stage, trials),
        f"{stage}_learning_curves.png": learning_curves(view, stage),
    }


def pngs(figures: dict[str, Figure]) -> dict[str, bytes]:
    """Each figure as PNG file content."""
    out = {}
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        out[name] = buffer.getvalue()
    return out


def _stage_index(view: SweepView, stage: str) -> int:
    return list(view.spaces).index(stage)


def _unit(param: scales.Param, value: Any) -> float:
    """A value's position in [0, 1] across its box, in the scaled coordinate (NaN for none)."""
    if value is None:
        return math.nan
    a, b = param.scaled(param.low), param.scaled(param.high)
    return (param.scaled(value) - a) / (b - a) if b != a else 0.5


def _axis_label(name: str, param: scales.Param) -> str:
    coordinate = {
        "log": f"log10 {name}",
        "log_int": f"log10 {name}",
        "one_minus_log": f"log10(1−{name})",
        "pow2": f"log2 {name}",
    }.get(param.scale, name)
    return f"{coordinate}\n[{param.low:.3g}, {param.high:.3g}]"
