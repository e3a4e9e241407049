"""The Generate page's words for a samples run's intervals (core/gen/intervals.py): each metric's 95% interval
over models, and one caption that says which differences the intervals measure. Runs made before intervals were
recorded get None: the page then shows the figures alone. Pure functions, tested without Streamlit."""

from __future__ import annotations

from core.stats import NO_DIFFERENCE, Interval, compare
from core.store.runs import SamplesRun
from ui.figures import GROUP_STYLE
from ui.texts import counted


def _label(group: str) -> str:
    return GROUP_STYLE.get(group, (group,))[0]


def _row(run: SamplesRun, group: str, epoch: int) -> dict | None:
    rows = run.interval_rows().get(group)
    return rows[epoch] if rows and -len(rows) <= epoch < len(rows) else None


def accuracy_note(run: SamplesRun, group: str, epoch: int) -> str | None:
    """ "95% interval 90.8%–91.6% over 16 models" for a group's mean accuracy at `epoch` (-1: the last)."""
    row = _row(run, group, epoch)
    if row is None:
        return None
    return f"95% interval {row['lo']:.1%}–{row['hi']:.1%} over {row['n']} models"


def accuracy_range(run: SamplesRun, group: str, epoch: int) -> str | None:
    """ "0.908–0.916": the 95% interval of a group's mean accuracy at `epoch` (-1: the last), for tables."""
    row = _row(run, group, epoch)
    return None if row is None else f"{row['lo']:.3f}–{row['hi']:.3f}"


def novelty_note(run: SamplesRun) -> str | None:
    """ "95% interval 0.58–0.68" of the generated models' median max error-IoU."""
    entry = run.novelty_interval("generated", "max_iou")
    return None if entry is None else f"95% interval {entry['lo']:.2f}–{entry['hi']:.2f}"


def intervals_caption(run: SamplesRun) -> str | None:
    """The generated models against each other group, as generated and after fine-tuning: higher, lower, or no
    measurable difference (their 95% intervals over models overlap)."""
    rows = run.interval_rows()
    if "generated" not in rows:
        return None
    last = len(rows["generated"]) - 1
    parts = []
    for epoch, when in {0: "as generated", **({last: f"after {counted(last, 'epoch')}"} if last else {})}.items():
        mine = Interval.from_json(rows["generated"][epoch])
        said = [_said(mine, Interval.from_json(r[epoch]), g) for g, r in rows.items() if g != "generated"]
        parts.append(f"{when}: " + ", ".join(said))
    return (
        "Mean test accuracy, 95% bootstrap intervals over models (where two overlap: no measurable difference). "
        "Generated models " + "; ".join(parts) + "."
    )


def _said(mine: Interval, other: Interval, group: str) -> str:
    said = compare(mine, other)
    return f"{NO_DIFFERENCE} from {_label(group)}" if said == NO_DIFFERENCE else f"{said} than {_label(group)}"
