"""Panda mode's checkpoints: one written after every epoch, a bounded number kept.

While a run trains, each epoch's checkpoint is written to `<sweep>/panda-pending/<run>/`
(a folder the sweeper owns); when the run ends, however it ends (Ctrl-C included), the kept ones
become MLflow artifacts of its run (`checkpoints/epoch-NNNN/`) and the folder is removed. Kept:
the last epoch, the best epoch (by the sweep's objective) and every `every`-th epoch, where
`every` = ⌈planned epochs / PERIODIC⌉: at most PERIODIC + 2 checkpoints per run, whatever its
length. Every epoch of a run of up to PERIODIC epochs is kept.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mlflow.tracking import MlflowClient

from model.checkpoint import Checkpoint
from sweeper.run import locks
from sweeper.run.lineage import CHECKPOINTS, epoch_folder

PERIODIC = 10
PENDING = "panda-pending"  # in the sweep folder (ownership.OWNED)
LOCK = "lock"  # in a run's pending folder, held while it trains: `delete` refuses meanwhile


def kept(epochs: list[int], best: int | None, every: int) -> set[int]:
    """The epochs whose checkpoints stay: the last, the best and each multiple of `every`."""
    last = max(epochs, default=None)
    return {e for e in epochs if e in (last, best) or e % every == 0}


@dataclass
class EpochCheckpoints:
    """Writes each epoch's checkpoint and drops those no longer kept (see the module doc)."""

    folder: Path  # <sweep>/panda-pending/<token>: created here, removed by `publish`
    every: int
    maximize: bool
    written: list[int] = field(default_factory=list)
    best: tuple[float, int] | None = None  # (objective value, epoch)
    lock: IO[str] | None = None  # held from `under` to `discard` (or the process's end)

    @classmethod
    def under(cls, sweep: Path, token: str, planned: int, maximize: bool) -> EpochCheckpoints:
        keeper = cls(sweep / PENDING / token, max(1, math.ceil(planned / PERIODIC)), maximize)
        keeper.folder.mkdir(parents=True, exist_ok=True)
        keeper.lock = locks.acquire(keeper.folder / LOCK)
        return keeper

    def write(self, checkpoint: Checkpoint, value: float | None) -> None:
        """Keep `checkpoint` (its epoch is in its progress), whose objective value is `value`."""
        epoch = checkpoint.progress.epoch
        staged = self.folder / f".{epoch_folder(epoch)}"
        checkpoint.save(staged)
        staged.rename(self.folder / epoch_folder(epoch))  # a half-written one is never kept
        sign = 1 if self.maximize else -1
        better = self.best is None or sign * (value or 0) > sign * self.best[0]
        if value is not None and math.isfinite(value) and better:
            self.best = (value, epoch)
        self.written.append(epoch)
        stays = kept(self.written, self.best[1] if self.best else None, self.every)
        for gone in set(self.written) - stays:
            shutil.rmtree(self.folder / epoch_folder(gone))
        self.written = sorted(stays)

    def publish(self, client: MlflowClient, run_id: str) -> None:
        """The kept checkpoints as the run's artifacts; the pending folder is removed."""
        for epoch in self.written:
            name = epoch_folder(epoch)
            client.log_artifacts(run_id, str(self.folder / name), f"{CHECKPOINTS}/{name}")
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.lock is not None:
            locks.release(self.lock)
            self.lock = None
        parent = self.folder.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def training(sweep: Path) -> bool:
    """Whether a `sweeper train` run is training in the sweep folder `sweep` right now (a run
    killed with SIGKILL leaves its pending folder, but no process holds its lock)."""
    return any(locks.held(token / LOCK) for token in (sweep / PENDING).glob("*"))
