"""The sweep folder: where a sweep lives, how a name or path finds it, its lock and spec copy.

Read by every command, so it imports neither Ray nor the data and search rooms: `status` finds
a folder with this module alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from sweeper.errors import UserError
from sweeper.run import locks, ownership
from sweeper.spec import schema as specs

if TYPE_CHECKING:
    from sweeper.data.datasets import DataInput

SPEC_COPY = "spec.yaml"
SPEC_COPY_PARTIAL = "spec.yaml.partial"  # while it is written
DATA_DIGESTS = "data.json"  # each input's name and digest (see DataInput), by its context


@dataclass(frozen=True)
class SweepFolder:
    path: Path

    @property
    def spec_copy(self) -> Path:
        return self.path / SPEC_COPY

    def load_spec(self) -> specs.SweepSpec:
        return specs.load(self.spec_copy, planned=True)

    def keep_spec(self, spec: specs.SweepSpec, inputs: list[DataInput]) -> None:
        """The spec's copy and the digests of its data, each written once, by whichever command
        first runs anything here (a sweep or `sweeper train`): what resume, status, list and
        delete find the folder by, and what a later launch's data must match.

        What a launch may change without changing the sweep (`resources`, `models`,
        `budget.hours`) is the latest launch's: `status` showed, and `resume` ran with, the
        first launch's. The rest stays as the copy has it (its stages, storage, folder)."""
        if self.spec_copy.is_file():
            kept = self.load_spec()
            budget = kept.budget
            if budget is not None and spec.budget is not None:
                budget = budget.model_copy(update={"hours": spec.budget.hours})
            latest = kept.model_copy(
                update={"resources": spec.resources, "models": spec.models, "budget": budget}
            )
            if latest != kept:
                self._write_spec(latest)
        else:
            self._write_spec(spec)
        digests = self.path / DATA_DIGESTS
        if not digests.is_file():
            kept = {i.context: {"name": i.name, "digest": i.digest} for i in inputs}
            ownership.write_private(digests, json.dumps(kept, indent=1))

    def _write_spec(self, spec: specs.SweepSpec) -> None:
        """Whole or not at all (renamed into place): every command finds the sweep by it."""
        raw = spec.model_dump(mode="json", exclude_none=True)
        partial = self.spec_copy.with_name(SPEC_COPY_PARTIAL)
        ownership.write_private(partial, yaml.safe_dump(raw, sort_keys=False))
        os.replace(partial, self.spec_copy)

    def changed_input(self, inputs: list[DataInput]) -> tuple[DataInput, str] | None:
        """An input that differs from the one the sweep began on, and that one's digest (None:
        none differs, or none was recorded). The spec names its data by path, so a file
        rewritten in place passed as the same sweep: its trials and kept models would have
        mixed two data sets."""
        digests = self.path / DATA_DIGESTS
        began = json.loads(digests.read_text()) if digests.is_file() else {}
        for now in inputs:
            then = began.get(now.context)
            if then is not None and then["digest"] != now.digest:
                return now, then["digest"]
        return None

    def tracking_uri(self, spec: specs.SweepSpec) -> str:
        """The spec's MLflow store, else SQLite in the folder (MLflow's plain file store
        refuses new runs)."""
        return spec.storage.mlflow or f"sqlite:///{self.path.resolve() / 'mlflow.db'}"

    @property
    def sweep_id(self) -> str | None:
        """The id its marker holds (None: not made yet, or made by an earlier version)."""
        marked = ownership.read_marker(self.path)
        return marked.sweep_id if marked else None

    @property
    def artifacts(self) -> Path:
        """Where the runs' files go, with any store but a tracking server (see `Tracker`)."""
        return self.path / "artifacts"

    def own_artifact(self, run_id: str, path: str) -> Path | None:
        """A run's artifact `path` in this folder's own artifacts, if it is there: MLflow
        records where the folder was when the run was made, so a moved or renamed folder
        could not read its models ("Failed to download artifacts")."""
        here = self.artifacts / run_id / "artifacts" / path
        return here if here.is_dir() else None

    def has_mlflow_store(self, spec: specs.SweepSpec) -> bool:
        """A tracking server, or the sweep's SQLite store once it exists."""
        return bool(spec.storage.mlflow) or (self.path / "mlflow.db").exists()


def sweep_folder(spec: specs.SweepSpec, root: Path | None = None) -> SweepFolder:
    """`dir:` of the spec if set, else ./sweeps/<name>/."""
    if spec.dir:
        return SweepFolder(Path(spec.dir))
    return SweepFolder((root or Path.cwd()) / "sweeps" / spec.name)


def is_path(name_or_path: str) -> bool:
    """A sweep argument is a folder path when it has a separator (or is `.`, `..`, `~…`);
    otherwise it is a name under ./sweeps/."""
    return "/" in name_or_path or name_or_path in (".", "..") or name_or_path.startswith("~")


def find_sweep(name_or_path: str, root: Path | None = None) -> SweepFolder:
    """A sweep by folder path, or by name under ./sweeps/ (else ./NAME); only a folder that
    `launch` created and marked."""
    if is_path(name_or_path):
        candidates = [Path(name_or_path).expanduser()]
    else:
        candidates = [(root or Path.cwd()) / "sweeps" / name_or_path, Path(name_or_path)]
    for path in candidates:
        if (path / SPEC_COPY).is_file():
            ownership.require_marked(path)
            return SweepFolder(path.absolute())
    raise UserError(
        f"no sweep {name_or_path!r} (looked for "
        f"{' and '.join(str(c / SPEC_COPY) for c in candidates)})"
    )


def is_running(folder: SweepFolder) -> bool:
    """Whether a driver holds the sweep's lock right now."""
    return locks.held(folder.path / "lock")


@contextmanager
def launch_lock(folder: SweepFolder) -> Iterator[None]:
    """Held by a driver from before Ray starts to its end. The sweep's own `lock` is taken only
    once Ray is up and the folder made: meanwhile a second launch of the same new sweep started
    a Ray of its own (15-28 s) before it was refused. Kept in the user's cache, by the folder's
    absolute path, since the folder may not exist yet."""
    launching = locks.user_cache() / "launching"
    launching.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(folder.path.absolute()).encode()).hexdigest()[:24]
    handle = locks.acquire(launching / f"{key}.lock")
    if handle is None:
        raise UserError(f"sweep {folder.path} is already running (another driver is starting it)")
    try:
        yield
    finally:
        locks.release(handle)


@contextmanager
def sweep_lock(folder: SweepFolder) -> Iterator[None]:
    """One driver per sweep: an exclusive lock on <folder>/lock for the driver's lifetime (the
    folder must exist). It waits a second for `is_running` probes of other commands."""
    handle = locks.acquire(folder.path / "lock", wait_s=1.0)
    if handle is None:
        raise UserError(f"sweep {folder.path} is already running (another driver holds its lock)")
    try:
        yield
    finally:
        locks.release(handle)


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
    if changed == ["stages"] and old.budget is not None and spec.budget is not None:
        raise UserError(
            f"sweep {spec.name!r} at {folder.path} was planned for its budget by an earlier "
            f"version's recipe: continue it with `sweeper resume {spec.name}` (it keeps its "
            "plan), or use a new name"
        )
    raise UserError(
        f"sweep {spec.name!r} exists at {folder.path} with a different spec "
        f"(changed: {', '.join(changed)}); use a new name, or `sweeper delete {spec.name}` first"
    )
