"""A sweep on disk and its run: folder, lock, spec copy, dataset, StudyServer, stages in order.

Everything a sweep needs lives in its folder (or in the storage URLs of its spec), so a sweep is
resumed by name: `run` on an existing folder with the same spec continues where it stopped.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import yaml

from sweeper import spec as specs
from sweeper.data import load_dataset
from sweeper.dispatch import StageProgress, run_stage
from sweeper.errors import UserError
from sweeper.server import StudyServer

SPEC_COPY = "spec.yaml"


@dataclass(frozen=True)
class SweepFolder:
    path: Path

    @property
    def spec_copy(self) -> Path:
        return self.path / SPEC_COPY

    def load_spec(self) -> specs.SweepSpec:
        return specs.load(self.spec_copy)


def sweep_folder(spec: specs.SweepSpec, root: Path | None = None) -> SweepFolder:
    """`dir:` of the spec if set, else ./sweeps/<name>/."""
    if spec.dir:
        return SweepFolder(Path(spec.dir))
    return SweepFolder((root or Path.cwd()) / "sweeps" / spec.name)


def find_sweep(name_or_path: str, root: Path | None = None) -> SweepFolder:
    """A sweep by folder path or by name under ./sweeps/."""
    candidates = [Path(name_or_path), (root or Path.cwd()) / "sweeps" / name_or_path]
    for path in candidates:
        if (path / SPEC_COPY).is_file():
            return SweepFolder(path)
    raise UserError(
        f"no sweep {name_or_path!r} (looked for "
        f"{' and '.join(str(c / SPEC_COPY) for c in candidates)})"
    )


@contextmanager
def sweep_lock(folder: SweepFolder) -> Iterator[None]:
    """One driver per sweep: an exclusive lock on <folder>/lock for the driver's lifetime."""
    folder.path.mkdir(parents=True, exist_ok=True)
    handle = open(folder.path / "lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(
            f"sweep {folder.path} is already running (another driver holds its lock)"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_same_spec(folder: SweepFolder, spec: specs.SweepSpec) -> None:
    """Refuse to resume a sweep whose spec changed, saying which top-level sections differ."""
    if not folder.spec_copy.is_file():
        return
    old = folder.load_spec()
    if old.fingerprint() == spec.fingerprint():
        return
    before, after = old.model_dump(), spec.model_dump()
    changed = [
        k
        for k in after
        if k not in ("dir", "storage", "resources") and before.get(k) != after.get(k)
    ]
    raise UserError(
        f"sweep {spec.name!r} exists at {folder.path} with a different spec "
        f"(changed: {', '.join(changed)}); use a new name, or `sweeper delete {spec.name}` first"
    )


@dataclass
class SweepResult:
    folder: Path
    stages: list[StageProgress]


def prepare(spec_path: Path) -> tuple[specs.SweepSpec, SweepFolder]:
    """Load a space.yaml with its data paths made absolute, and check it against its sweep."""
    spec = specs.load(spec_path)
    base = spec_path.resolve().parent
    data = spec.data.model_copy(
        update={
            "source": _absolute(spec.data.source, base),
            "test": spec.data.test and _absolute(spec.data.test, base),
        }
    )
    spec = spec.model_copy(update={"data": data})
    folder = sweep_folder(spec)
    check_same_spec(folder, spec)
    return spec, folder


def run(
    spec: specs.SweepSpec,
    folder: SweepFolder,
    on_progress: Callable[[StageProgress], None] | None = None,
) -> SweepResult:
    """Run (or resume) every stage of a sweep. Ray must already be initialized."""
    dataset = load_dataset(spec.data)  # bad data fails here, before anything is written
    with sweep_lock(folder):
        if not folder.spec_copy.is_file():
            raw = spec.model_dump(mode="json", exclude_none=True)
            folder.spec_copy.write_text(yaml.safe_dump(raw, sort_keys=False))
        dataset_ref = ray.put(dataset)
        server = (
            ray.remote(StudyServer)
            .options(num_cpus=0, max_concurrency=1)
            .remote(spec.model_dump_json(), str(folder.path.resolve()))
        )
        results = []
        try:
            for index, stage in enumerate(spec.stages):
                opened: dict[str, Any] = ray.get(server.open_stage.remote(index))
                progress = run_stage(
                    server,
                    index,
                    stage.name,
                    stage.trials,
                    opened["counts"],
                    spec.train,
                    dataset_ref,
                    spec.objective.metric,
                    spec.objective.direction == "maximize",
                    spec.resources,
                    on_progress,
                )
                ray.get(server.close_stage.remote(index))
                results.append(progress)
        finally:
            ray.get(server.flush.remote())
            ray.kill(server)
    return SweepResult(folder.path, results)


def _absolute(source: str, base: Path) -> str:
    return source if source.startswith("builtin:") else str((base / source).resolve())
