"""A kept model loads with its own requirements only: the project and its other dependencies
absent (a fresh environment, `mlflow models serve` without `--env-manager local`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sweeper.data.datasets import load_dataset
from sweeper.run.fit import fit
from sweeper.spec.schema import DataSpec
from sweeper.tracking import models

ROOT = Path(__file__).resolve().parents[2]
# the project's dependencies that are not a kept model's requirements (models.REQUIREMENTS)
NOT_REQUIRED = ("optuna", "ray", "sklearn", "matplotlib", "typer", "rich", "optuna_dashboard")
LOAD_ALONE = """
import importlib.abc, json, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in sys.argv[3].split(","):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path = [Absent(), *(f for f in sys.meta_path if "editable" not in repr(f))]
sys.path = [p for p in sys.path if p not in ("", sys.argv[2]) and "__editable__" not in p]
import mlflow, pandas as pd
rows = pd.DataFrame({"x0": [1.0, -1.0], "x1": [0.5, 0.0]})
print(json.dumps([int(v) for v in mlflow.pyfunc.load_model(sys.argv[1]).predict(rows)]))
"""


def test_a_kept_model_loads_without_the_projects_other_dependencies(tmp_path: Path) -> None:
    """Its bundled `sweeper.spec.scales` imported Optuna at the top, which no kept model
    requires: loading failed with "No module named 'optuna'"."""
    dataset = load_dataset(DataSpec(source="builtin:flower"))
    trained = fit({"epochs": 1, "hidden_units": 4}, dataset, None, "numpy")
    models.save(tmp_path / "model", trained.checkpoint, dataset.preprocessing)
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_ALONE, str(tmp_path / "model"), str(ROOT),
         ",".join(NOT_REQUIRED)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert set(json.loads(loaded.stdout)) <= {0, 1}
