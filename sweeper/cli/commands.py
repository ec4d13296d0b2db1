"""The `sweeper` command: thin wrappers that parse, call one library function, and print.

Exit codes: 0 success, 2 bad input (a one-line message, no traceback), 1 anything else.
Over 300 lines because it holds a dozen commands with their help texts; the live views are
`sweeper.cli.display`'s and the logic of every command is `sweeper.api`'s.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sweeper.cli.display import Curve, Display, console
from sweeper.errors import UserError
from sweeper.secrets import mask

if TYPE_CHECKING:
    from sweeper.api import Sweep
    from sweeper.run.folder import SweepFolder

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Hyperparameter sweeps of NumPy/CuPy networks on Ray, tracked in MLflow.",
)
# user text (names, paths, columns, messages) is printed as it is: `[/b]` is not Rich markup here
errors = Console(stderr=True, markup=False, emoji=False, highlight=False)


def _error(message: str) -> None:
    errors.print(Text.assemble(("error:", "red"), " ", mask(message)), soft_wrap=True)


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn UserError into exit 2 and other errors into exit 1, each as one readable message."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except UserError as error:
            _error(str(error))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            errors.print("interrupted")
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as error:
            _error(f"{type(error).__name__}: {error}")
            raise typer.Exit(1) from None

    return wrapper


def _run_sweep(
    spec_path: Path, address: str | None, quiet: bool, folder: SweepFolder | None = None
) -> None:
    from sweeper import api
    from sweeper.run.folder import sweep_folder

    plan = api.prepare(spec_path, folder)
    spec, folder = plan.spec, plan.folder
    if plan.dataset.left_out:
        left_out = ", ".join(f"{name} ({kind})" for name, kind in plan.dataset.left_out.items())
        errors.print(
            f"note: {spec.data.source}: not numeric, left out of the features: {left_out} "
            "(list the features in data.features to be told why)",
            soft_wrap=True,
        )
    # what `resume`, `status` … are given: the name when ./sweeps/NAME is the folder
    by_name = (
        folder.path.absolute()
        == sweep_folder(spec.model_copy(update={"dir": None})).path.absolute()
    )
    name = spec.name if by_name else str(folder.path)
    display = None if quiet else Display()
    if display:
        display.live.start()
    from ray.exceptions import RayActorError, RayTaskError

    try:
        try:
            result = api.run_plan(plan, address, display.update if display else None)
        finally:  # the last table stays; a message printed while it was live, on a terminal,
            if display:  # was wiped by its final redraw (Ctrl-C's resume command)
                display.stop()
    except RayActorError as lost:  # its process killed: what it wrote is whole (journal, runs)
        errors.print(
            f"error: the sweep's StudyServer was lost ({type(lost).__name__}); what it recorded "
            f"is kept: resume with: sweeper resume {name}",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except RayTaskError as failed:  # e.g. its database went away: one line, not Ray's 140
        cause = failed.cause if isinstance(failed.cause, Exception) else failed
        if isinstance(cause, UserError):
            raise cause from None
        first = (str(cause).strip().splitlines() or [""])[0]
        errors.print(
            f"error: the sweep's StudyServer failed ({type(cause).__name__}: {mask(first)}); "
            f"what it recorded is kept: once the cause is fixed, resume with: sweeper resume "
            f"{name}",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except KeyboardInterrupt as stopped:
        if not folder.spec_copy.is_file():  # stopped while Ray started: no sweep exists yet
            errors.print(
                "interrupted before the sweep began: nothing to resume; "
                f"run `sweeper launch {spec_path}` again",
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
        errors.print(
            "interrupted: running trials recorded as interrupted; resume with: "
            f"sweeper resume {name}",
            soft_wrap=True,
        )
        _warn_of_mlflow_errors(getattr(stopped, "mlflow_errors", []), name)
        raise typer.Exit(130) from None
    _warn_of_mlflow_errors(result.mlflow_errors, name)
    finished = sum(p.finished for p in result.stages)
    planned = sum(stage.trials for stage in spec.stages)
    if finished < planned and spec.budget is not None and spec.budget.hours is not None:
        console.print(
            f"time budget of {spec.budget.hours:g} h spent: {finished} of {planned} trials "
            f"finished; `sweeper resume {name}` runs the rest"
        )
    found = result.best
    if found:
        console.print(
            f"best: stage {found.stage} trial {found.trial} "
            f"{spec.objective.metric}={found.value:.4f} params={found.params}",
            soft_wrap=True,  # one line in a log file; a terminal wraps it as it likes
        )
    elif finished:  # every trial pruned, most often diverged: say so, not nothing
        errors.print(
            f"warning: none of the {finished} finished trials completed, so no model was kept"
            f"{_diverged_hint(folder)}",
            soft_wrap=True,
        )
    console.print(
        f"results: sweeper status {name}  |  sweeper ui {name}  |  sweeper report {name}",
        soft_wrap=True,
    )


def _diverged_hint(sweep: Sweep) -> str:
    """How many of a sweep's trials diverged, and what to do about it (nothing if none did)."""
    from sweeper import api

    diverged = sum(stage.diverged for stage in api.status(sweep).stages)
    if not diverged:
        return ""
    return f"; {diverged} diverged (lower the learning_rate range)"


def _warn_of_mlflow_errors(mlflow_errors: list[str], name: str) -> None:
    if mlflow_errors:
        errors.print(
            f"warning: {len(mlflow_errors)} MLflow writes failed (Optuna holds the trials; "
            f"`sweeper resume {name}` rewrites their runs); first: {mask(mlflow_errors[0])}",
            soft_wrap=True,
        )


@app.command()
@_guarded
def launch(
    spec_path: Annotated[Path, typer.Argument(help="the sweep's space.yaml")],
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no live progress display")] = False,
) -> None:
    """Run a sweep; launching an existing sweep with the same spec resumes it."""
    _run_sweep(spec_path, address, quiet)


@app.command()
@_guarded
def resume(
    sweep: Annotated[str, typer.Argument(help="sweep name (under ./sweeps) or folder")],
    address: Annotated[str | None, typer.Option(help="Ray cluster address")] = None,
    quiet: Annotated[bool, typer.Option(help="no live progress display")] = False,
) -> None:
    """Continue a stopped or crashed sweep from its folder."""
    from sweeper.run.folder import find_sweep

    folder = find_sweep(sweep)
    _run_sweep(folder.spec_copy, address, quiet, folder)


@app.command()
@_guarded
def status(
    sweep: Annotated[str, typer.Argument(help="sweep name or folder")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Trial counts per stage, each stage's plan (what `budget:` expanded into) and search box."""
    from sweeper import api

    found = api.status(sweep)
    if as_json:
        print(json.dumps(found.to_json()))
        return
    table = Table(title=f"sweep {found.name}")
    for column in ("stage", "target", "complete", "pruned", "failed", "running"):
        table.add_column(column, no_wrap=True)
    for s in found.stages:
        pruned = str(s.counts["pruned"]) + (f" ({s.diverged} diverged)" if s.diverged else "")
        failed = str(s.counts["failed"]) + (f" ({s.run_again} run again)" if s.run_again else "")
        counts = (s.counts["complete"], pruned, failed, s.counts["running"])
        table.add_row(s.name, str(s.target), *map(str, counts))
    console.print(table)
    budget = found.budget
    if budget:
        limit = f", at most {budget['hours']:g} h a launch" if "hours" in budget else ""
        plan = "the thorough plan" if budget.get("search") == "thorough" else "the recommended plan"
        console.print(f"budget: {budget['trials']} trials{limit}, {plan}", soft_wrap=True)
    # each stage's plan and box below the counts, as text that wraps: as columns of the table
    # they were squeezed to a word per line in 80 columns
    for s in found.stages:
        console.print(Text.assemble((s.name, "bold"), f": {s.plan}"))
        if s.space is not None:
            box = ", ".join(f"{k} {_describe(v)}" for k, v in s.space.items())
            console.print(Text(f"  box: {box}"))
    if found.models:
        kept = found.models
        console.print(f"kept models: {kept.kept}, {kept.bytes / 1e6:.2f} MB on disk")
    if found.state == "stopped":  # trials shown running lost their driver
        console.print(f"stopped: `sweeper resume {sweep}` runs the rest", soft_wrap=True)
    elif found.state == "not started":  # e.g. a folder `sweeper train` made: panda runs only
        console.print(f"not started: `sweeper resume {sweep}` runs the sweep", soft_wrap=True)
    else:
        console.print(found.state)


def _describe(param: dict[str, Any]) -> str:
    if param["scale"] == "categorical":
        return str(param["choices"])
    return f"[{param['low']:.4g}, {param['high']:.4g}] {param['scale']}"


@app.command()
@_guarded
def best(
    sweep: Annotated[str, typer.Argument(help="sweep name or folder")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The best completed trial: its params and final metrics."""
    from sweeper import api

    found = api.best(sweep)
    if found is None:
        if api.status(sweep).state == "running":
            raise UserError(f"sweep {sweep!r} has no completed trial yet")
        raise UserError(f"sweep {sweep!r} has no completed trial{_diverged_hint(sweep)}")
    if as_json:
        print(json.dumps(found.to_json()))
        return
    console.print(found.to_json())


@app.command()
@_guarded
def train(
    spec_path: Annotated[Path, typer.Argument(help="the sweep's space.yaml")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="trainer option, e.g. --set learning_rate=0.01 (repeatable)"),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="continue RUN_ID[@EPOCH] (an earlier train run), NAME (a sweep's best trial) "
            "or NAME:STAGE:TRIAL; --set may then change the learning rate and its schedule, "
            "β, β2, ε, L2, keep_prob, batch_size, epochs and early_stopping",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="epochs to train (with --from: how many more)"),
    ] = None,
    history: Annotated[
        str | None,
        typer.Option("--history", help="list the family of runs of SOURCE instead of training"),
    ] = None,
    backend: Annotated[str, typer.Option(help="numpy, cupy or auto")] = "auto",
) -> None:
    """Panda mode: train one model with a live learning curve, logged to MLflow.

    Starts from the sweep's best trial's options when there is one (else the middle of each
    range), or goes on from a checkpoint with --from. Every epoch's checkpoint is kept (the last,
    the best and at most 10 more); Ctrl-C keeps the last completed epoch."""
    from sweeper import api
    from sweeper.run.panda import (
        check_backend,
        hangup_and_terminate_as_ctrl_c,
        parse_overrides,
    )

    if history is not None:
        _print_family(api.panda_history(spec_path, history))
        return
    check_backend(backend)  # before the live view starts
    panda = api.panda_run(spec_path, parse_overrides(overrides or []), source, epochs)
    console.print(f"training {panda.options}", soft_wrap=True)
    curve = Curve(panda)
    with hangup_and_terminate_as_ctrl_c(), curve.live:
        result = panda.train(backend, curve.update)
    ending = "interrupted" if result.interrupted else result.outcome.value
    console.print(
        f"\n{ending}: "
        + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
        + f"  (MLflow run {result.run_id})"
    )
    if result.kept_epochs:
        epochs_kept = ", ".join(map(str, result.kept_epochs))
        console.print(f"checkpoints kept at epochs {epochs_kept}: --from {result.run_id}@EPOCH")
    if result.interrupted:
        raise typer.Exit(130)


def _print_family(runs: list[Any]) -> None:
    table = Table(title="panda family")
    for column in ("run", "id", "parent", "epochs", "options changed", "best dev", "status"):
        table.add_column(column, overflow="fold")  # ids whole: they are what --from takes
    for run in runs:
        changed = json.loads(run.changed) if run.changed else {}
        shown = ", ".join(f"{k} {old}→{new}" for k, (old, new) in changed.items())
        best = "" if run.best is None else f"{run.best:.4g}"
        epochs = f"{run.first_epoch}–{run.last_epoch}"
        table.add_row(run.name, run.run_id, run.parent, epochs, shown, best, run.status)
    console.print(table)


@app.command()
@_guarded
def prune(
    sweep: Annotated[str, typer.Argument(help="sweep name or folder")],
    trial: Annotated[int, typer.Option(help="number of the running trial to stop")],
    stage: Annotated[str | None, typer.Option(help="its stage (default: where it runs)")] = None,
) -> None:
    """Stop a running trial at its next epoch (recorded PRUNED, reason=manual)."""
    from sweeper import api

    stage_name = api.prune(sweep, trial, stage)
    console.print(f"trial {trial} of stage {stage_name} will stop at its next epoch")


@app.command()
@_guarded
def delete(
    sweep: Annotated[str, typer.Argument(help="sweep name or folder")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    force: Annotated[
        bool, typer.Option(help="also delete files in the folder that the sweeper did not create")
    ] = False,
) -> None:
    """Remove a sweep: its Optuna studies, its MLflow experiment and the files it made.

    Only a folder `launch` created; one holding anything else is refused (and the files listed)
    unless --force."""
    from sweeper import api

    def confirm(folder: Path) -> bool:
        try:
            return typer.confirm(f"delete sweep {sweep!r} ({folder}) and all its runs?")
        except typer.Abort:  # no answer (no terminal, end of input): it printed "error: Abort:"
            errors.print()
            return False

    deleted = api.delete(sweep, force, None if yes else confirm)
    if deleted is None:
        errors.print("not deleted (--yes deletes without asking)")
        raise typer.Exit(1)
    console.print(f"deleted {deleted}")


@app.command()
@_guarded
def export(
    sweep: Annotated[str, typer.Argument(help="sweep name or folder")],
    path: Annotated[Path, typer.Argument(help="output file: .parquet or .csv")],
    force: Annotated[bool, typer.Option("--force", help="write over an existing file")] = False,
) -> None:
    """One row per trial (stage, number, state, value, params, metrics, duration, node)."""
    from sweeper import api

    rows = api.export(sweep, path, force)
    console.print(f"wrote {rows} trials to {path}")


@app.command()
@_guarded
def predict(
    sweep: Annotated[str, typer.Argument(help="sweep name or folder")],
    data: Annotated[Path, typer.Argument(help="rows to predict: .parquet, .csv, .arrow")],
    out: Annotated[Path, typer.Option("--out", help="output file: .parquet or .csv")],
    trial: Annotated[
        int | None, typer.Option(help="this trial's kept model instead of the best")
    ] = None,
    stage: Annotated[str | None, typer.Option(help="the stage of --trial")] = None,
    force: Annotated[bool, typer.Option("--force", help="write over an existing file")] = False,
) -> None:
    """Predict labels with a kept model (the best trial's by default), as MLflow loads it."""
    from sweeper import api

    rows = api.predict(sweep, data, out, trial, stage, force)
    console.print(f"wrote {rows} predictions to {out}")


@app.command()
@_guarded
def report(
    sweep: Annotated[str, typer.Argument(help="sweep name or folder")],
    output: Annotated[
        Path | None, typer.Option(help="HTML file (default: report.html in the sweep folder)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="write over an existing file")] = False,
) -> None:
    """One self-contained HTML page: best configuration, top trials, figures."""
    import optuna

    from sweeper import api

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" per figure
    path = api.report(sweep, output, force)
    console.print(f"report: {path.resolve().as_uri()}")


@app.command()
@_guarded
def ui(
    sweep: Annotated[str, typer.Argument(help="sweep name or folder")],
    port: Annotated[int, typer.Option(help="port (0: a free one)", min=0, max=65535)] = 0,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    dashboard: Annotated[
        bool, typer.Option(help="optuna-dashboard on the studies instead of the MLflow UI")
    ] = False,
) -> None:
    """Browse the sweep: the MLflow UI over its runs (or optuna-dashboard over its studies)."""
    from sweeper.cli.ui import exposure_warning, serve
    from sweeper.run.folder import find_sweep

    warning = exposure_warning(host)
    if warning:
        errors.print(Text.assemble(("warning:", "yellow"), " ", warning), soft_wrap=True)
    serve(
        find_sweep(sweep),
        host,
        port,
        dashboard,
        lambda line: console.print(line, soft_wrap=True),
    )


@app.command("list")
@_guarded
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Sweeps under ./sweeps with their progress."""
    from sweeper import api

    sweeps = api.list_sweeps()
    if as_json:
        print(json.dumps([s.to_json() for s in sweeps]))
        return
    width = max([30, *(len(s.name) for s in sweeps)])  # a longer name shifted its line
    for s in sweeps:
        progress = "unreadable" if s.error else f"{s.finished}/{s.target} {s.state}"
        console.print(f"{s.name:{width}} {progress:18} {s.folder}", soft_wrap=True)
        if s.error:
            console.print(f"  {mask(s.error)}", soft_wrap=True)


def main() -> None:
    os.umask(0o077)  # every file the sweeper (and the Ray it starts) creates is the user's alone
    # a model read from the local store needs no download bar: `predict` says what it wrote
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    app(sys.argv[1:])


if __name__ == "__main__":
    main()
