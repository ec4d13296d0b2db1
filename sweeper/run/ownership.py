"""Which folders are sweeps, and which files in them the sweeper made.

A tool that runs for hours on people's machines must never delete or write what it did not
create. So `launch` creates a sweep's folder itself (private to the user, 0700) and marks it with
MARKER, which names the sweep; every other command refuses a folder without that marker, and
`delete` removes only the entries in OWNED, refusing (and listing) anything else it finds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from sweeper.errors import UserError

MARKER = ".sweeper-sweep.json"
# every entry the sweeper itself puts in a sweep folder (artifacts/ is MLflow's, for our runs)
OWNED = frozenset(
    {
        MARKER,
        "spec.yaml",
        "spec.yaml.partial",
        "data.json",
        "lock",
        "writer.lock",
        "optuna.journal",
        "mlflow.db",
        "mlflow.db-wal",
        "mlflow.db-shm",
        "mlflow.db-journal",
        "mlflow.db.creating",
        "prune-requests.jsonl",
        "report.html",
        "artifacts",
        "models-pending",
        "panda-pending",
    }
)
# what the sweeper puts directly in its own folders: MLflow run ids; stage names; run tokens
OWNED_FOLDERS = {
    "artifacts": re.compile(r"[0-9a-f]{32}"),
    "models-pending": re.compile(r"[^/]+"),
    "panda-pending": re.compile(r"\d+-\d+"),
}
NAME_MAX = 100
# folders a sweep may never be: the root and the system's own (and anything inside these)
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev",
                "/proc", "/sys", "/run")  # fmt: skip
SYSTEM_FOLDERS = ("/", "/home", "/tmp", "/var", "/opt", "/mnt", "/media", "/srv", "/root")


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a sweep's folder name (one plain path component), or None."""
    if name in (".", ".."):
        return f"{name!r} is not a sweep name: it names a folder that already exists"
    if name.startswith(("-", ".")):
        return f"a sweep name may not start with {name[0]!r} (got {name!r})"
    if len(name) > NAME_MAX:
        return f"a sweep name has at most {NAME_MAX} characters (got {len(name)})"
    return None


def dir_problem(path: Path, cwd: Path | None = None) -> str | None:
    """Why `path` cannot hold a sweep (`dir:` in space.yaml), or None."""
    resolved = path.expanduser().resolve()
    cwd = (cwd or Path.cwd()).resolve()
    text = str(resolved)
    if text in SYSTEM_FOLDERS or resolved == Path.home().resolve():
        return f"{resolved} is a system or home folder, not a sweep folder"
    if any(text == tree or text.startswith(tree + "/") for tree in SYSTEM_TREES):
        return f"{resolved} is inside a system folder"
    if resolved == cwd or resolved in cwd.parents:
        return f"{resolved} is the working directory or one of its parents"
    return None


@dataclass(frozen=True)
class Identity:
    """What the marker records: the sweep this folder belongs to. `sweep_id` is drawn once, when
    the folder is made: its studies and experiment in a shared store carry it, so that a sweep of
    the same name from another folder is told apart (None: a folder of an earlier version)."""

    name: str
    fingerprint: str
    sweep_id: str | None = None


def read_marker(folder: Path) -> Identity | None:
    try:
        raw = json.loads((folder / MARKER).read_text())
        sweep_id = raw.get("sweep_id")
        return Identity(str(raw["name"]), str(raw["fingerprint"]), sweep_id and str(sweep_id))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def require_marked(folder: Path) -> Identity:
    """The folder's identity; a UserError for a folder `launch` did not create."""
    identity = read_marker(folder)
    if identity is None:
        raise UserError(
            f"{folder} is not a sweep folder (no {MARKER}: `sweeper launch` did not create it); "
            "the sweeper does not touch it"
        )
    return identity


def claim(folder: Path, identity: Identity) -> None:
    """Create and mark a new sweep folder (0700), or accept one already marked for this sweep."""
    if folder.exists():
        found = require_marked(folder)
        if found.name != identity.name:
            raise UserError(f"{folder} belongs to sweep {found.name!r}, not {identity.name!r}")
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)
    marked = dataclasses.replace(identity, sweep_id=identity.sweep_id or uuid.uuid4().hex)
    write_private(folder / MARKER, json.dumps(dataclasses.asdict(marked)) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600), whatever the umask."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def foreign_entries(folder: Path) -> list[str]:
    """What is in the folder that the sweeper did not put there: entries not in OWNED, and in
    its own folders what it never puts in them (artifacts/ holds one folder per MLflow run, the
    pending folders one per stage or run): a user's notes saved in artifacts/ went unseen."""
    foreign = [entry.name for entry in folder.iterdir() if entry.name not in OWNED]
    for name, expected in OWNED_FOLDERS.items():
        if (folder / name).is_dir() and not (folder / name).is_symlink():
            foreign += [
                f"{name}/{entry.name}"
                for entry in (folder / name).iterdir()
                if entry.is_symlink() or not entry.is_dir() or not expected.fullmatch(entry.name)
            ]
    return sorted(foreign)


def refuse_foreign(folder: Path) -> None:
    """A UserError listing what in the folder the sweeper did not create, if anything."""
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" * (len(foreign) > 10))
        raise UserError(
            f"{folder} holds files the sweeper did not create: {shown}; move them out, "
            "or pass --force to delete them too"
        )


def remove_owned(folder: Path, force: bool = False) -> None:
    """Remove the sweeper's files and then the folder; refuse if anything else is in it,
    unless `force`."""
    require_marked(folder)
    if not force:
        refuse_foreign(folder)
    for entry in folder.iterdir():
        if entry.name == MARKER:
            continue  # last: a delete cut short leaves a folder still marked as ours
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (folder / MARKER).unlink()
    folder.rmdir()
