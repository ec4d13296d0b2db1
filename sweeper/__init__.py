"""The sweeper: hyperparameter sweeps of NumPy/CuPy networks on Ray, tracked in MLflow.

`sweeper.launch(path)`, `sweeper.status(name)`, … are the functions of `sweeper.api`, imported on
first use: a Ray worker that imports `sweeper.run.trial` does not load them.
"""

import importlib
from typing import Any

API = (
    "best",
    "delete",
    "export",
    "launch",
    "list_sweeps",
    "panda_history",
    "panda_run",
    "predict",
    "prepare",
    "prune",
    "report",
    "resume",
    "run_plan",
    "status",
    "train_one",
)


def __getattr__(name: str) -> Any:
    if name in API:
        return getattr(importlib.import_module("sweeper.api"), name)
    raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
