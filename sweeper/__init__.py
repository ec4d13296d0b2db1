"""The sweeper: hyperparameter sweeps of NumPy/CuPy networks on Ray, tracked in MLflow.

`sweeper.launch(path)`, `sweeper.status(name)`, … are the functions of `sweeper.api`, imported on
first use: a Ray worker that imports `sweeper.trial` does not load them.
"""

import importlib
import importlib.util
from typing import Any

API = (
    "best",
    "delete",
    "export",
    "launch",
    "list_sweeps",
    "panda_run",
    "prepare",
    "prune",
    "report",
    "resume",
    "run_plan",
    "status",
    "train_one",
)


def __getattr__(name: str) -> Any:
    # a submodule of the same name wins, so that `from sweeper import <module>` imports it
    if name in API and importlib.util.find_spec(f"sweeper.{name}") is None:
        return getattr(importlib.import_module("sweeper.api"), name)
    raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
