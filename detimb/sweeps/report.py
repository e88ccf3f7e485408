"""A sweep's outputs: ``SWEEP.md`` (table, reasons, verdict), ``sweep.json``, ``forest.png``
(each remedy's ΔAPr, ΔAPc, ΔAPf and ΔmAP with their intervals, and the objective's when it
is an AP-fixed metric) and ``per_class.png``. Beside AP the table shows ΔAPr-fixed and
ΔAP-fixed, so a rare-class gain that only re-ranks detections across classes shows up."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from detimb.sweeps.analysis import METRICS, Comparison, Verdict
from detimb.sweeps.selection import Choice
from detimb.sweeps.statistics import Interval
from detimb.sweeps.timings import NOT_RECORDED
from detimb.utils import atomic_write, atomic_write_text

TABLE_METRICS = (*METRICS, "APr-fixed", "AP-fixed")


def _cell(interval: Interval | None) -> str:
    if interval is None:
        return "n/a"
    mark = "" if interval.beyond_noise else " ~"
    return f"{interval.mean:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]{mark}"


def machines_note(trained_on: dict[str, int]) -> list[str]:
    """A warning when the runs were trained on more than one machine: training is
    deterministic on one machine but not across CPUs (their float kernels differ), so a
    difference between runs of two machines carries the machines' difference too."""
    known = {m: n for m, n in trained_on.items() if m != NOT_RECORDED}
    if len(known) < 2:
        return []
    counts = "; ".join(f"{m}: {n} run{'s' if n > 1 else ''}" for m, n in trained_on.items())
    return [f"**Trained on {len(known)} machines** ({counts}). Training is repeatable on one machine, not across"
            " CPUs, so a difference between runs trained on different machines includes the machines' own;"
            " to remove it, train every run of the comparison on one kind of machine."]


def markdown(summary: dict[str, Any], selection: dict[str, Comparison], confirmation: dict[str, Comparison],
             choices: list[Choice], result: Verdict, post_hoc: list[str]) -> str:
    """SWEEP.md: what was measured, the table, the verdict, the reasons, the post-hoc
    remedies' chosen strengths (``post_hoc``, in words) and the failures."""
    s = summary
    lines = [f"# Sweep: {s['config']}", "",
             f"{len(s['remedies'])} arms x {len(s['seeds'])} seeds ({', '.join(map(str, s['seeds']))}),"
             f" {s['iters']} iterations each, trained by detimb {', '.join(s['trained_by']) or '-'}; scored by"
             f" {s['code']}. Objective: **{s['objective']}**.",
             f"Selection half: {s['halves']['selection']} images; confirmation: {s['halves']['confirmation']}"
             f" ({s['confirmation_source']}).",
             f"Intervals: 95%, {s['method']}. `~` marks a difference within noise (the interval holds 0).",
             *machines_note(s["trained_on"]), "",
             "## Verdict", "", result.words, *_fixed_check(result, confirmation), "",
             f"## Differences from the baseline (selection half; last column: confirmation, {s['objective']})", "",
             "| remedy | seeds | " + " | ".join(f"Δ{m}" for m in TABLE_METRICS)
             + f" | confirmation Δ{s['objective']} |",
             "|---|---|" + "---|" * (len(TABLE_METRICS) + 1)]
    for name, comp in selection.items():
        confirm = confirmation.get(name)
        row = [name, str(len(comp.seeds))] + [_cell(comp.metrics.get(m)) for m in TABLE_METRICS]
        row.append(_cell(None if confirm is None else confirm.metrics.get(s["objective"])))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Per seed (selection half, Δ" + s["objective"] + "): " + "; ".join(
        f"{n} " + ", ".join(f"{d:+.3f}" for d in c.metrics[s['objective']].per_seed)
        for n, c in selection.items() if c.metrics.get(s["objective"]) is not None), "",
        "## Candidates", ""]
    lines += [f"- {'measured' if c.chosen else 'left out'}: **{c.name}**: {c.reason}" for c in choices]
    if post_hoc:
        lines += ["", "## Post-hoc remedies (trained nothing; chosen on the selection half)", ""]
        lines += [f"- {words}" for words in post_hoc]
    if s["one_half_only"]:
        lines += ["", f"Classes with one validation image, so in one half only: {', '.join(s['one_half_only'])}."]
    failed = [r for r in s["runs"] if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {r['key']}: exit {r['code']}: `{r['error_last_line']}`"
                                              for r in failed]
    t = s["seconds"]
    stopped = f", {t['stopped']} stopped before concluding" if t["stopped"] else ""
    lines += ["", f"Time over {t['invocations']} invocation(s){stopped}: {t['training']:.0f} s training,"
              f" {t['bookkeeping']:.0f} s planning, scoring and reporting ({t['bookkeeping_share']:.1%})."]
    return "\n".join(lines) + "\n"


def _fixed_check(result: Verdict, confirmation: dict[str, Comparison]) -> list[str]:
    """The chosen remedy's confirmation-half difference under AP-fixed, in words."""
    comp = confirmation.get(result.chosen) if result.chosen else None
    cells = [] if comp is None else [comp.metrics[m].words(f"Δ{m}") for m in ("APr-fixed", "AP-fixed")
                                     if comp.metrics.get(m) is not None]
    if not cells:
        return []
    return ["", f"Under AP-fixed (no per-image cap, each class's top detections over the images), {result.chosen}"
                f" gives on the confirmation half: {'; '.join(cells)}."]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    _plt().close(fig)


def forest_plot(path: Path, selection: dict[str, Comparison], confirmation: dict[str, Comparison],
                objective: str) -> None:
    """One panel per metric: each remedy's difference with its interval (selection half, and
    the confirmation half for the objective), 0 marked."""
    plt = _plt()
    names = list(selection)
    panels = METRICS if objective in METRICS else (*METRICS, objective)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 0.45 * len(names) + 1.6), sharey=True)
    for ax, metric in zip(np.atleast_1d(axes), panels):
        for row, name in enumerate(names):
            for offset, (comps, colour) in enumerate(((selection, "#1f77b4"), (confirmation, "#d62728"))):
                if offset and metric != objective:
                    continue
                interval = comps[name].metrics.get(metric) if name in comps else None
                if interval is None or math.isnan(interval.mean):
                    continue
                y = row - 0.18 * offset
                ax.plot([interval.low, interval.high], [y, y], color=colour, linewidth=2)
                ax.plot(interval.mean, y, "o", color=colour, markersize=5)
        ax.axvline(0.0, color="grey", linestyle=":")
        ax.set_title(f"Δ{metric}" + (" (objective)" if metric == objective else ""))
        ax.set_yticks(range(len(names)), names)
    first = np.atleast_1d(axes)[0]
    first.plot([], [], color="#1f77b4", label="selection half")
    first.plot([], [], color="#d62728", label="confirmation half")
    first.legend(loc="best", fontsize=7)
    _save(fig, path)


def per_class_plot(path: Path, selection: dict[str, Comparison], names: list[str]) -> None:
    """Each remedy's per-class AP difference on the selection half, with intervals."""
    plt = _plt()
    remedies = list(selection)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) * max(1, len(remedies)) / 2), 4.2))
    width = 0.8 / max(1, len(remedies))
    for j, remedy_name in enumerate(remedies):
        xs, means, errors = [], [], [[], []]
        for k, name in enumerate(names):
            interval = selection[remedy_name].per_class.get(name)
            if interval is None or math.isnan(interval.mean):
                continue
            xs.append(k + (j - (len(remedies) - 1) / 2) * width)
            means.append(interval.mean)
            errors[0].append(interval.mean - interval.low)
            errors[1].append(interval.high - interval.mean)
        ax.bar(xs, means, width, yerr=errors, label=remedy_name, capsize=2)
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("ΔAP (selection half)")
    ax.legend(fontsize=7)
    _save(fig, path)


def write_markdown(path: Path, text: str) -> None:
    atomic_write_text(path, text)
