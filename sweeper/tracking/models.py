"""Kept trials' models: written as MLflow Models into their runs, removed when pushed out.

A model folder is MLflow's `python_function` flavor over `pyfunc_model.py` (models from code),
with two artifacts: the network's checkpoint (JSON + `.npz`) and the preprocessing (JSON). Its
signature declares the `probabilities` param only: the model checks its input columns itself, by
name and type, in messages that name the column (MLflow's schema of `double` columns refused
integer ones, which a CSV of counts or years holds, with a dump of the whole frame).
The environment is written as this process's versions of what prediction imports (no inference
of requirements, which starts a subprocess per model). The modules of `model` and `sweeper` that
loading imports go with it (`code/`, first on sys.path when it loads): it is whole without this
project installed, and a user's own `model.py` does not shadow the package.
"""

from __future__ import annotations

import functools
import json
import modulefinder
import shutil
import tempfile
from importlib import import_module
from importlib.metadata import version
from pathlib import Path

import mlflow
from mlflow.models import ModelSignature
from mlflow.types import ParamSchema, ParamSpec

from model.checkpoint import Checkpoint
from sweeper.data.datasets import Preprocessing

REQUIREMENTS = ("mlflow", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml")
OUR_PACKAGES = ("model", "sweeper")
# The model's code: MLflow runs it when a model is loaded. Not imported here, since defining its
# class makes MLflow warn (no type hints on `predict`) in every command that only names models.
PYFUNC_MODEL = Path(__file__).with_name("pyfunc_model.py")
NETWORK = "network"  # the artifacts' names inside the model folder
PREPROCESSING = "preprocessing"


def save(folder: Path, checkpoint: Checkpoint, preprocessing: Preprocessing) -> None:
    """Write an MLflow Model to `folder` (which must not exist yet)."""
    with tempfile.TemporaryDirectory() as staging:
        network, stored = Path(staging) / NETWORK, Path(staging) / f"{PREPROCESSING}.json"
        checkpoint.save(network)
        stored.write_text(json.dumps(preprocessing.to_json()))
        code = Path(staging) / "code"
        for name, source in own_modules():
            target = code / Path(*name.split(".")).with_suffix(".py")
            if source.name == "__init__.py":
                target = target.with_suffix("") / "__init__.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        mlflow.pyfunc.save_model(
            path=str(folder),
            python_model=str(PYFUNC_MODEL),
            artifacts={NETWORK: str(network), PREPROCESSING: str(stored)},
            signature=signature(),
            pip_requirements=list(requirements()),
            code_paths=[str(code / package) for package in OUR_PACKAGES],
        )


class _OurImports(modulefinder.ModuleFinder):
    """Follows the imports of our packages only (MLflow's, NumPy's are requirements)."""

    def import_hook(self, name, caller=None, fromlist=None, level=-1):
        if name.partition(".")[0] not in OUR_PACKAGES:
            return None
        return super().import_hook(name, caller, fromlist, level)


@functools.cache
def own_modules() -> tuple[tuple[str, Path], ...]:
    """(module name, its file) of every module of ours that loading a kept model imports,
    found by following `pyfunc_model.py`'s imports, those inside functions too (~0.1 s).

    Each package is looked for where this process imports it from: under a Ray job's
    `py_modules` every package is unpacked into a folder of its own."""
    homes = dict.fromkeys(str(Path(import_module(p).__file__).parents[1]) for p in OUR_PACKAGES)
    finder = _OurImports(path=list(homes))
    finder.run_script(str(PYFUNC_MODEL))
    return tuple(
        sorted(
            (name, Path(module.__file__))
            for name, module in finder.modules.items()
            if name.partition(".")[0] in OUR_PACKAGES and module.__file__
        )
    )


@functools.cache
def requirements() -> tuple[str, ...]:
    """The pins of what prediction imports, as installed (read once: ~12 ms per model)."""
    return tuple(f"{name}=={version(name)}" for name in REQUIREMENTS)


def signature() -> ModelSignature:
    return ModelSignature(params=ParamSchema([ParamSpec("probabilities", "boolean", False)]))
