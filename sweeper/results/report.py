"""`sweeper report`: one self-contained HTML page (figures inlined as PNG data URIs, no script,
no external file), so it opens offline and can be mailed or archived as is."""

from __future__ import annotations

import base64
import html
from typing import Any

from sweeper.records import TrialRecord, records_run_again
from sweeper.results.view import SweepView

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5rem; }
img { max-width: 100%; }
"""


def render(view: SweepView, figures: dict[str, bytes], top: int = 10) -> str:
    """The page: best configuration, the top trials, and every figure (PNG content by name)."""
    spec = view.spec
    ranked = view.ranked()
    by_stage = {s: [r for r in view.rows if r.stage == s] for s in view.spaces}
    parts = [
        f"<h1>Sweep {_e(spec.name)}</h1>",
        f"<p>objective: {_e(spec.objective.direction)} {_e(spec.objective.metric)}; "
        + "; ".join(f"{_e(s)}: {_counts(rows)}" for s, rows in by_stage.items())
        + "</p>",
    ]
    if ranked:
        best = ranked[0]
        parts += [
            f"<h2>Best configuration (stage {_e(best.stage)}, trial {best.number})</h2>",
            _table(["option", "value"], [[k, v] for k, v in best.params.items()]),
            _table(["metric", "value"], [[k, v] for k, v in best.metrics.items()]),
        ]
    names = list(dict.fromkeys(n for r in ranked[:top] for n in r.params))  # deepest layers too
    parts += [
        f"<h2>Top {min(top, len(ranked))} trials</h2>",
        _table(
            ["stage", "trial", spec.objective.metric, "epochs run", *names],
            [
                [r.stage, r.number, r.value, r.epochs, *(r.params.get(n, "") for n in names)]
                for r in ranked[:top]
            ],
        ),
        "<h2>Figures</h2>",
        *(
            f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{_base64(png)}">'
            f"<figcaption>{_e(name)}</figcaption></figure>"
            for name, png in figures.items()
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Sweep {_e(spec.name)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    return _e(f"{value:.4g}" if isinstance(value, float) else str(value))


def _e(text: Any) -> str:
    return html.escape(str(text))


def _base64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _counts(rows: list[TrialRecord]) -> str:
    """A stage's trials by state, as `status` counts them: a lost or interrupted trial whose
    params ran again is no failure of its configuration (the report said "2 failed" where
    status said "failed 2 (2 run again)")."""
    count = {state: sum(r.state == state for r in rows) for state in ("COMPLETE", "PRUNED", "FAIL")}
    again = records_run_again(rows)
    failed = f"{count['FAIL']} failed" + (f" ({again} run again)" if again else "")
    return f"{count['COMPLETE']} complete, {count['PRUNED']} pruned, {failed}"
