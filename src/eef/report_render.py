"""How the report looks: its PNG plots (written atomically) and its Markdown and HTML rendering.

:mod:`eef.report` gathers what a run's artifacts say into a list of blocks; this module draws and
renders them. Matplotlib is imported inside the plot functions (the rest of eef never needs it)
and only its object-oriented API is used: no pyplot, so no global backend or figure state.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eef.trajectory import Trajectory

Curves = Mapping[str, Sequence[tuple[float, float]]]
Intervals = Mapping[str, Sequence[tuple[float, float, float]]]  # label -> (x, low, high)
Bars = Sequence[tuple[str, Mapping[str, float]]]
Block = tuple[
    Any, ...
]  # ("h", level, text) | ("p", text) | ("link", before, target, after) | ("table", headers, rows) | ("pre", text)
#                        | ("img", file, alt) | ("trajectory", Trajectory) | ("toc", [(level, text)])
#                        | ("details", summary, text)


def plot_curves(
    curves: Curves,
    path: Path,
    *,
    title: str,
    ylabel: str,
    xlabel: str = "iteration",
    intervals: Intervals | None = None,
    share: bool = False,
    log_y: bool = False,
) -> bool:
    """Draw one line per label through its ``(x, y)`` points, the y axis from 0 (or logarithmic).

    Args:
        curves: label -> points; labels with no points are left out.
        path: the PNG to write.
        title: the plot's title.
        ylabel: the y axis's label.
        xlabel: the x axis's label.
        intervals: label -> ``(x, low, high)``: drawn as error bars on that label's points.
        share: the values are shares: the axis runs from 0 to 100%.
        log_y: a logarithmic y axis (losses that fall by orders of magnitude; values must be positive).

    Returns:
        Whether a plot was written (False when there is nothing to draw).
    """
    curves = {label: sorted(points) for label, points in curves.items() if points}
    if not curves:
        return False
    fig, ax = _figure()
    for i, (label, points) in enumerate(curves.items()):
        dodge = (i - (len(curves) - 1) / 2) * 0.03  # error bars of methods at one iteration stay apart
        xs, ys = [x + dodge for x, _ in points], [y for _, y in points]
        (line,) = ax.plot(xs, ys, marker="o" if len(points) <= 40 else None, label=label)  # long curves as lines
        bands = [
            (x + dodge, y, lo, hi) for x, lo, hi in (intervals or {}).get(label, ()) for px, y in points if px == x
        ]
        if bands:
            ax.errorbar(
                [b[0] for b in bands],
                [b[1] for b in bands],
                yerr=[
                    [max(0.0, b[1] - b[2]) for b in bands],
                    [max(0.0, b[3] - b[1]) for b in bands],
                ],  # no rounding below 0
                fmt="none",
                ecolor=line.get_color(),
                capsize=3,
                alpha=0.7,
            )
    _axes(ax, title, xlabel, ylabel, share, log_y)
    # Iterations and steps are whole numbers; fractional ticks would suggest otherwise.
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)
    return True


def plot_bars(bars: Bars, path: Path, *, title: str, ylabel: str, stacked: bool = False, share: bool = False) -> bool:
    """Draw one group of bars per x label, one bar (or stacked block) per series.

    Args:
        bars: ``(x label, {series: value})`` in display order; a series missing from a group
            counts as 0.
        path: the PNG to write.
        title: the plot's title.
        ylabel: the y axis's label.
        stacked: stack the series on one bar per group instead of placing them side by side.
        share: the values are shares: the axis runs from 0 to 100%.

    Returns:
        Whether a plot was written (False when there are no groups or no series).
    """
    series = list(dict.fromkeys(name for _, values in bars for name in values))
    if not bars or not series:
        return False
    fig, ax = _figure(width=max(6.4, 0.9 * len(bars) + 2))
    positions = range(len(bars))
    width = 0.8 if stacked else 0.8 / len(series)
    bottoms = [0.0] * len(bars)
    for i, name in enumerate(series):
        heights = [float(values.get(name, 0.0)) for _, values in bars]
        if stacked:
            ax.bar(positions, heights, width, bottom=bottoms, label=name)
            bottoms = [b + h for b, h in zip(bottoms, heights)]
        else:
            offset = (i - (len(series) - 1) / 2) * width
            ax.bar([p + offset for p in positions], heights, width, label=name)
    ax.set_xticks(list(positions), [label for label, _ in bars], rotation=30 if len(bars) > 6 else 0)
    _axes(ax, title, None, ylabel, share)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, never over one
    _save(fig, path)
    return True


def _axes(ax: Any, title: str, xlabel: str | None, ylabel: str, share: bool, log_y: bool = False) -> None:
    """Title, labels, grid; the y axis from 0 (from 0 to 100% for shares), so gaps look their size,
    or logarithmic."""
    from matplotlib.ticker import PercentFormatter

    ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if log_y:
        ax.set_yscale("log")
    elif share:
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    else:
        ax.set_ylim(bottom=0)


def _figure(width: float = 6.4) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 3.8), layout="constrained")
    return fig, fig.add_subplot()


def _save(fig: Any, path: Path) -> None:
    """Render to a temporary name beside ``path``, then rename: readers never see half a PNG."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _transcript(trajectory: Trajectory) -> list[tuple[str, str]]:
    """(speaker, text) pairs: the instruction (first observation), then each action and its answer."""
    parts = [("instruction", trajectory.first_observation)]
    for i, turn in enumerate(trajectory.turns, start=1):
        parts += [(f"agent {i}", turn.text), (f"observation {i}", turn.observation)]
    return parts


def _caption(t: Trajectory) -> str:
    return f"{t.task_id}: {'success' if t.success else 'failure'}, reward {t.reward:.2f}, {len(t.turns)} steps" + (
        "" if t.terminated else ", cut short"
    )


def _fence(text: str) -> str:
    """A Markdown code fence longer than any backtick run inside, so the text cannot end it."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}\n{text}\n{fence}"


def _md_text(text: str) -> str:
    """Text shown as itself in Markdown: run, teacher and method names come from the user's config."""
    return re.sub(r"([\\`*_\[\]<>|~#])", r"\\\1", text).replace("\n", " ")


def anchor(text: str) -> str:
    """The fragment id of a heading, as GitHub derives it from Markdown headings (and the HTML
    report sets it): lower case, punctuation dropped, spaces as hyphens.

    >>> anchor("Test results by task group (tier)")
    'test-results-by-task-group-tier'
    """
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def render_markdown(blocks: list[Block]) -> str:
    """The blocks as Markdown; text is escaped, and untrusted text (trajectories, config) appears only
    escaped or inside code fences."""
    out = []
    for kind, *args in blocks:
        if kind == "h":
            out.append("#" * args[0] + " " + _md_text(args[1]))
        elif kind == "p":
            out.append(_md_text(args[0]))
        elif kind == "link":
            out.append(f"{_md_text(args[0])}[{_md_text(args[1])}]({args[1]}){_md_text(args[2])}")
        elif kind == "table":
            out.append(
                "\n".join(
                    "| " + " | ".join(map(_md_text, row)) + " |" for row in [args[0], ["---"] * len(args[0]), *args[1]]
                )
            )
        elif kind == "pre":
            out.append(_fence(args[0].rstrip("\n")))
        elif kind == "details":
            out.append(
                f"<details><summary>{html.escape(args[0])}</summary>\n\n{_fence(args[1].rstrip())}\n\n</details>"
            )
        elif kind == "toc":
            out.append("\n".join(f"{'  ' * (level - 2)}- [{_md_text(t)}](#{anchor(t)})" for level, t in args[0]))
        elif kind == "img":
            out.append(f"![{args[1]}]({args[0]})")
        elif kind == "trajectory":
            out.append(
                f"**{_caption(args[0])}**\n\n"
                + _fence("\n\n".join(f"[{who}]\n{text}" for who, text in _transcript(args[0])))
            )
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:75rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;padding:.2rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}img{max-width:100%;display:block;margin:1rem 0}
pre{background:#f7f7f7;padding:.5rem;margin:.2rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
.agent pre{background:#eaf1ff}.who{font-size:.8rem;color:#666}details{margin:.4rem 0}summary{cursor:pointer}
.toc{columns:2;font-size:.9rem}.toc3{margin-left:1.2rem}"""


def render_html(title: str, blocks: list[Block]) -> str:
    """A self-contained page; every piece of text is escaped (trajectories hold arbitrary page text)."""
    e = html.escape
    head = f'<meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style>'
    out = [f'<!doctype html>\n<html lang="en"><head>{head}</head><body>']
    for kind, *args in blocks:
        if kind == "h":
            out.append(f'<h{args[0]} id="{e(anchor(args[1]))}">{e(args[1])}</h{args[0]}>')
        elif kind == "p":
            out.append(f"<p>{e(args[0])}</p>")
        elif kind == "link":
            out.append(f'<p>{e(args[0])}<a href="{e(args[1])}">{e(args[1])}</a>{e(args[2])}</p>')
        elif kind == "table":
            header = "".join(f"<th>{e(h)}</th>" for h in args[0])
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in args[1])
            out.append(f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "pre":
            out.append(f"<pre>{e(args[0])}</pre>")
        elif kind == "details":
            out.append(f"<details><summary>{e(args[0])}</summary><pre>{e(args[1])}</pre></details>")
        elif kind == "toc":
            items = "".join(f'<li class="toc{level}"><a href="#{e(anchor(t))}">{e(t)}</a></li>' for level, t in args[0])
            out.append(f'<nav><ul class="toc">{items}</ul></nav>')
        elif kind == "img":
            out.append(f'<img src="{e(args[0])}" alt="{e(args[1])}">')
        elif kind == "trajectory":
            parts = "".join(
                f'<div class="{"agent" if who.startswith("agent") else "env"}"><div class="who">'
                f"{e(who)}</div><pre>{e(text)}</pre></div>"
                for who, text in _transcript(args[0])
            )
            out.append(f"<details><summary>{e(_caption(args[0]))}</summary>{parts}</details>")
    return "\n".join(out) + "\n</body></html>\n"
