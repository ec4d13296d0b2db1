"""`sweeper predict`: a kept model's predictions for the rows of a Parquet/CSV file.

The model is loaded through MLflow (`mlflow.pyfunc.load_model` of its `runs:/…/model` URI), so
the command gives exactly what any MLflow user of the model gets. The file's feature columns are
checked first, by name, against what the model was trained on: a missing or non-numeric column
is a DataError naming the file and the column, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from sweeper import secrets
from sweeper.data.datasets import read_table
from sweeper.errors import UserError
from sweeper.results.export import write_table
from sweeper.results.summary import best, models
from sweeper.run.sweep import SweepFolder

PREDICTION = "prediction"  # the output's label column; then one `probability.<class>` each


def model_uri(folder: SweepFolder, stage: str | None, trial: int | None) -> str:
    """The kept model of (stage, trial); the sweep's best trial's when `trial` is None."""
    kept = models(folder)
    if trial is None:
        found = best(folder)
        if found is None or found.model_uri is None:
            raise UserError(f"{folder.path}: the sweep has no kept model yet")
        return found.model_uri
    matches = [(s, n) for s, n in kept if n == trial and stage in (None, s)]
    if len(matches) != 1:
        where = f" of stage {stage!r}" if stage else ""
        have = ", ".join(f"{s} {n}" for s, n in sorted(kept)) or "none"
        why = "is in several stages: give --stage" if matches else "has no kept model"
        raise UserError(f"trial {trial}{where} {why} (kept models: {have})")
    return kept[matches[0]]


def predict(
    folder: SweepFolder, data: Path, out: Path, stage: str | None, trial: int | None
) -> int:
    """Write the predictions for `data`'s rows to `out`; the row count."""
    import mlflow

    uri = model_uri(folder, stage, trial)
    table = read_table(data)
    spec = folder.load_spec()
    local = _in_the_folder(folder, uri)
    loaded = mlflow.pyfunc.load_model(
        str(local)
        if local is not None
        else mlflow.artifacts.download_artifacts(
            uri, tracking_uri=secrets.expand(folder.tracking_uri(spec))
        )
    )
    loaded.unwrap_python_model().preprocessing.inputs(table, str(data))  # columns, by name
    frame = table.to_pandas()
    labels = loaded.predict(frame)
    probabilities = loaded.predict(frame, params={"probabilities": True})
    columns = {PREDICTION: pa.array(labels.tolist())} | {
        f"probability.{c}": pa.array(probabilities[c].to_numpy()) for c in probabilities.columns
    }
    return write_table(pa.table(columns), out)


def _in_the_folder(folder: SweepFolder, uri: str) -> Path | None:
    """The model of `runs:/RUN/PATH` in the sweep's own artifacts folder, if it is there."""
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    here = folder.own_artifact(run_id, path)
    return here if here is not None and (here / "MLmodel").is_file() else None
