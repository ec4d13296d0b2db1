"""The two live views of the `sweeper` command: a sweep's progress table (`Display`) and panda
mode's learning curves (`Curve`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from sweeper.records import StageProgress
    from sweeper.run.panda import PandaRun

console = Console(markup=False, emoji=False, highlight=False)  # the command's output


class Display:
    """Live progress: per stage done / pruned / failed / running, best so far, elapsed, ETA.

    On a terminal, a table redrawn in place. Sent to a file or a pipe (`nohup sweeper launch …
    > sweep.log`) a live table is written once, at the end, so the log also gets a progress line
    at most every `log_every_s` seconds and when a stage's last trial ends."""

    def __init__(
        self,
        out: Console = console,
        log_every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.start = clock()
        self.rows: dict[str, StageProgress] = {}
        # each stage's time: from the end of the one before (or its opening) to its own end
        self.began: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.opened_with: dict[str, int] = {}  # finished when it opened: a resumed stage's
        # drawn afresh at each refresh, so elapsed counts on between trials that end
        self.live = Live(
            console=out, refresh_per_second=4, transient=False, get_renderable=self._table
        )
        self.log_every_s, self.logged_at = log_every_s, self.start

    def _table(self) -> Table:
        # one space between columns and none at the edges: the nine fit 80 columns whole
        table = Table(title="sweep progress", box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
        for column in (
            "stage",
            "done",
            "complete",
            "pruned",
            "failed",
            "running",
            "best",
            "elapsed",
            "ETA",
        ):
            table.add_column(column)
        now = self.clock()
        for p in list(self.rows.values()):  # (the refresh thread's copy)
            elapsed = self.ended.get(p.stage, now) - self.began[p.stage]
            done = p.finished
            new = done - self.opened_with[p.stage]  # this launch's: its rate is the ETA's
            eta = elapsed / new * (p.target - done) if new > 0 and done < p.target else 0.0
            table.add_row(
                p.stage,
                f"{done}/{p.target}",
                str(p.counts["complete"]),
                str(p.counts["pruned"]),
                str(p.counts["failed"]),
                str(p.running),
                "" if p.best is None else f"{p.best:.4g}",
                f"{elapsed:.0f}s",
                f"{eta:.0f}s" if new or done >= p.target else "",  # no rate: no ETA
            )
        again = sum(p.run_again for p in self.rows.values())
        if again:  # below, as text that wraps: in the failed column it broke the 80 columns
            table.caption = f"failed: {again} lost or interrupted, run again"
        return table

    def update(self, progress: StageProgress) -> None:
        now = self.clock()
        # the first stage from when it opened: Ray's start (seconds, more on a cluster) is not its
        self.began.setdefault(progress.stage, max(self.ended.values(), default=now))
        self.opened_with.setdefault(progress.stage, progress.finished)
        if progress.finished >= progress.target:
            self.ended.setdefault(progress.stage, now)
        self.rows[progress.stage] = progress
        self.live.refresh()
        done = progress.finished
        due = now - self.logged_at >= self.log_every_s or done >= progress.target
        if not self.live.console.is_terminal and due:
            self.logged_at = now
            c = progress.counts
            best = "" if progress.best is None else f", best {progress.best:.4g}"
            self.live.console.print(
                f"{progress.stage}: {done}/{progress.target} done ({c['complete']} complete, "
                f"{c['pruned']} pruned, {c['failed']} failed{_again(progress)}), "
                f"{progress.running} running"
                f"{best}, {now - self.start:.0f}s",
                soft_wrap=True,
            )

    def stop(self) -> None:
        """The last table stays. Rich ends it with a newline on a terminal only: sent to a file
        or a pipe (`sweeper launch … > sweep.log`), the next line would run into its border."""
        self.live.stop()
        if not self.live.console.is_terminal:
            self.live.console.line()


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], span: tuple[float, float] | None = None) -> str:
    """A learning curve in one line of text, scaled to `span` (default: its own range) so that
    curves drawn with one span compare (train vs dev)."""
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if not finite:
        return ""
    lo, hi = span or (min(finite), max(finite))
    scale = (len(SPARKS) - 1) / (hi - lo) if hi > lo else 0.0
    return "".join(SPARKS[round((v - lo) * scale)] if v in finite else "!" for v in values)


BRANCH = "│"  # where a continued run leaves its source's curve
SHOWN_OPTIONS = ("optimizer", "learning_rate", "lr_schedule", "lr_decay", "lr_base", "lr_step",
                 "beta", "beta2", "l2", "keep_prob", "batch_size")  # fmt: skip


def options_in_force(options: dict[str, Any], changed: dict[str, Any]) -> str:
    """The options a babysitter turns, `*` on those set for this run."""
    shown = [
        f"{name}={options[name]}" + ("*" * (name in changed))
        for name in SHOWN_OPTIONS
        if options.get(name) is not None
    ]
    return " ".join(shown)


def _again(progress: StageProgress) -> str:
    return f" of which {progress.run_again} run again" if progress.run_again else ""


class Curve:
    """Panda mode's live view: per quantity, train and dev side by side on one scale (bias vs
    variance), the options in force, and a continued run's source curve up to the branch."""

    WIDTH = 60  # epochs shown per curve

    def __init__(self, panda: PandaRun) -> None:
        self.first, self.last = panda.first_epoch, panda.epochs
        self.before = panda.origin.history if panda.origin else []
        self.branch = f" · from {panda.origin.label} {BRANCH}" if panda.origin else ""
        self.options = options_in_force(panda.options, panda.changed)
        self.history: list[dict[str, float]] = []
        self.live = Live(self._table(), console=console, refresh_per_second=8)

    def _table(self) -> Table:
        from sweeper.run.panda import bias_variance

        epoch = self.first + len(self.history) - 1
        table = Table(title=f"epoch {epoch} of {self.first}–{self.last}{self.branch}")
        caption = [self.options] + ([bias_variance(self.history[-1])] if self.history else [])
        table.caption = "\n".join(caption)
        for column in ("metric", "last", "best", "curve"):
            table.add_column(column)
        names = list(self.history[-1]) if self.history else []
        for name in names:
            table.add_row(*self._row(name, names))
        return table

    def _row(self, name: str, names: list[str]) -> tuple[str, str, str, str]:
        values = [h.get(name, float("nan")) for h in self.history]
        before = [h.get(name, float("nan")) for h in self.before]
        quantity = name.split("_", 1)[-1]
        pair = [n for n in names if n in (f"train_{quantity}", f"dev_{quantity}")] or [name]
        together = [h.get(n, float("nan")) for h in self.before + self.history for n in pair]
        finite = [v for v in together if math.isfinite(v)]
        span = (min(finite), max(finite)) if finite else None
        keep = max(0, self.WIDTH - len(values))
        curve = sparkline(before[len(before) - keep :] if keep else [], span)
        curve += (BRANCH if self.before and keep else "") + sparkline(values[-self.WIDTH :], span)
        best = max(values) if "accuracy" in name else min(values)
        return name, f"{values[-1]:.4g}", f"{best:.4g}", curve

    def update(self, epoch: int, metrics: dict[str, float]) -> None:
        self.history.append(metrics)
        self.live.update(self._table())
