"""Exclusive file locks (flock): released by the kernel when their process dies, however it dies.

Two locks guard a sweep folder: `lock`, held by the one driver, and `writer.lock`, held by the
one StudyServer. The second matters after a crash: a new driver's StudyServer waits until the
old one's process is gone, so two writers never append to the same journal.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO


def acquire(path: Path, wait_s: float = 0.0) -> IO[str] | None:
    """The open, locked file; None if another process still holds it after `wait_s`."""
    handle = open(path, "a+")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(0.1)
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle


def held(path: Path) -> bool:
    """Whether some process holds the lock at `path`: a probe that takes a shared lock for an
    instant and writes nothing (taking it exclusively wrote the prober's PID into the file)."""
    try:
        handle = open(path)
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def release(handle: IO[str]) -> None:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def user_cache() -> Path:
    """The sweeper's folder in the user's cache (XDG_CACHE_HOME, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sweeper"
