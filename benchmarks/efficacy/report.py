"""Turn the efficacy runs into RESULTS.md and plots: means, spreads, differences, verdicts.

    python benchmarks/efficacy/report.py [--results benchmarks/efficacy/sweeps] [--out benchmarks/efficacy]

The runs are ``run.py``'s: the detection sweeps' (``<dataset>/<detector>/runs/<remedy>/seed<k>``)
and the segmentation runs (``<dataset>/segmentation/<entry>/seed<k>``), each read from its
final ``eval.json``; a run without ``run.json`` has not finished and is left out. Each
detection sweep's own ``SWEEP.md`` adds what this report does not: paired bootstrap
intervals over the validation images and the verdict on the confirmation half.

A difference from the baseline is paired by seed (the same seed trains both) and given
as mean +- standard deviation over the seeds both have. A claim that a method raises a
number counts as reproduced in direction when the mean difference is positive and larger
than its spread (and is flagged when under NEGLIGIBLE, too small to act on); positive but
within the spread is reported as such; otherwise not reproduced. A claim that a method
matches its baseline is reproduced unless the mean difference is below zero by more than
its spread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.efficacy.matrix import BASE_ENTRIES, DETECTION, SEGMENTATION, Entry  # noqa: E402
from detimb.sweeps.timings import machines, totals  # noqa: E402
from detimb.utils import atomic_write, atomic_write_text  # noqa: E402

ENTRIES: dict[str, Entry] = {e.name: e for e in DETECTION + SEGMENTATION}
DET_COLUMNS = ("mAP", "APr", "APc", "APf")
SEG_COLUMNS = ("mDice_global", "Dicer_global", "Dicec_global", "Dicef_global")
Runs = dict[str, dict[str, dict[int, dict[str, Any]]]]  # dataset -> entry -> seed -> run
NEGLIGIBLE = 0.005  # on the 0-1 AP / Dice scale: half a point, below what a practitioner would act on


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers the report needs from a run's eval.json."""
    if "semantic" in report:
        r = report["semantic"]
        return {"metrics": dict(r["summary"]), "per_class": {e["name"]: e["dice_global"] for e in r["per_class"][1:]},
                "groups": {e["name"]: e.get("group") for e in r["per_class"][1:]}}
    r = report["bbox"]
    metrics = {"mAP": r["stats"]["mAP"], "AP50": r["stats"]["AP50"], "mAP_macro": r["mAP_macro"], **r["groups"]}
    return {"metrics": metrics, "per_class": {e["name"]: e["AP"] for e in r["per_class"]},
            "groups": {e["name"]: e.get("group") for e in r["per_class"]}}


def read_run(folder: Path) -> dict[str, Any] | None:
    """A finished run's summary, or None (not finished, or a post-hoc run: no eval.json). The
    dataset is the folder its training annotations are in; a sweep's ``baseline`` run is its
    detector's entry; ``sweep``: the sweep folder the run belongs to (None for a lone run)."""
    if not (folder / "run.json").is_file() or not (folder / "eval.json").is_file():
        return None
    trained = yaml.safe_load((folder / "config.yaml").read_text())
    in_sweep = folder.parents[1].name == "runs" and (folder.parents[2] / "plan.json").is_file()
    name = folder.parent.name
    entry = BASE_ENTRIES.get(trained["model"]["type"], name) if in_sweep and name == "baseline" else name
    return {"dataset": Path(trained["data"]["train"]["ann_file"]).parents[1].name, "entry": entry,
            "seed": int(trained["train"]["seed"]), "iters": trained["train"]["schedule"]["max_iters"],
            "seconds": json.loads((folder / "run.json").read_text())["seconds"],
            "sweep": folder.parents[2] if in_sweep else None, "folder": folder,
            **summarise(json.loads((folder / "eval.json").read_text()))}


def load(roots: Sequence[Path]) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """dataset -> entry -> seed -> run summary, from every finished run under ``roots`` (the
    efficacy runner's folder, other sweeps of the same datasets). A (dataset, entry, seed)
    found twice must have the same numbers (deterministic training makes the baselines of
    two sweeps equal), and a dataset's detection runs one schedule: else pairing them across
    sweeps would mix them, and the report refuses."""
    runs: dict[str, dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for root in roots:
        for done in sorted(Path(root).rglob("run.json")):
            r = read_run(done.parent)
            if r is None or r["entry"] not in ENTRIES:
                continue
            other = runs[r["dataset"]][r["entry"]].get(r["seed"])
            if other is not None and (other["metrics"], other["per_class"]) != (r["metrics"], r["per_class"]):
                raise SystemExit(f"{other['folder']} and {r['folder']}: {r['entry']} seed {r['seed']} on {r['dataset']}"
                                 " with other results (other code, or another machine); report the sweeps apart")
            runs[r["dataset"]][r["entry"]].setdefault(r["seed"], r)
    for dataset, entries in runs.items():
        iters = {r["iters"] for name, seeds in entries.items() for r in seeds.values() if ENTRIES[name] in DETECTION}
        if len(iters) > 1:
            raise SystemExit(f"{dataset}: detection runs of {sorted(iters)} iterations; report one schedule at a time")
    return runs


def stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def metric(run: dict[str, Any], name: str) -> float:
    v = run["metrics"].get(name)
    return float(v) if v is not None else float("nan")


def difference(runs: dict[str, dict[int, dict[str, Any]]], entry: str, base: str, name: str
               ) -> tuple[float, float, int] | None:
    seeds = sorted(set(runs.get(entry, {})) & set(runs.get(base, {})))
    if not seeds or entry == base:
        return None
    diffs = [metric(runs[entry][s], name) - metric(runs[base][s], name) for s in seeds]
    mean, std = stats(diffs)
    return mean, std, len(seeds)


def at_floor(runs: dict[str, dict[int, dict[str, Any]]], entry: str, base: str, name: str) -> bool:
    """Both score exactly 0 on every paired seed: the budget never learned the metric's classes."""
    seeds = set(runs.get(entry, {})) & set(runs.get(base, {}))
    return bool(seeds) and all(metric(runs[x][s], name) == 0 for s in seeds for x in (entry, base))


def fmt(mean: float, std: float, signed: bool = False) -> str:
    if np.isnan(mean):
        return "-"
    return f"{mean:+.3f} ± {std:.3f}" if signed else f"{mean:.3f} ± {std:.3f}"


def verdict(d: tuple[float, float, int] | None, kind: str = "raises") -> str:
    if d is None:
        return "-"
    mean, std, n = d
    seeds = "" if n > 1 else " (1 seed)"
    if kind == "matches":
        if mean >= 0:
            return "reproduced" + seeds
        return ("reproduced: below by less than the spread" if -mean <= std else
                "not reproduced: below by more than the spread") + seeds
    if mean > 0 and (mean > std or n < 2):
        # compared as printed (3 decimals), so a +0.005 in the table is never called "under 0.005"
        return ("reproduced" if round(mean, 3) >= NEGLIGIBLE else f"reproduced, but under {NEGLIGIBLE}") + seeds
    if mean > 0:
        return "same direction, within the spread"
    return "not reproduced"


def tradeoff(runs: dict[str, dict[int, dict[str, Any]]], name: str, columns: tuple[str, ...],
             base: str | None = None) -> str:
    """The method's paired change on every column (against its baseline unless ``base``
    is given), to show what a tail gain cost the head."""
    parts = []
    for c in columns:
        d = difference(runs, name, base or ENTRIES[name].baseline, c)
        if d:
            parts.append(f"{c} {d[0]:+.3f} ± {d[1]:.3f}")
    return ", ".join(parts)


def table(runs: dict[str, dict[int, dict[str, Any]]], names: list[str], columns: tuple[str, ...]) -> list[str]:
    head = ["method", "family", "seeds", *columns, *(f"Δ{c}" for c in columns[:3]), "baseline"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        entry, seeds = ENTRIES[name], runs[name]
        cells = [name, entry.family, str(len(seeds))]
        cells += [fmt(*stats([metric(r, c) for r in seeds.values()])) for c in columns]
        for c in columns[:3]:
            d = difference(runs, name, entry.baseline, c)
            cells.append(fmt(d[0], d[1], signed=True) if d else "-")
        cells.append(entry.baseline)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_class_table(runs: dict[str, dict[int, dict[str, Any]]], names: list[str]) -> tuple[list[str], list[str]]:
    first = next(iter(runs[names[0]].values()))
    classes = list(first["per_class"])
    lines = ["| method | " + " | ".join(f"{c} ({first['groups'].get(c) or '-'})" for c in classes) + " |",
             "|---|" + "---|" * len(classes)]
    for name in names:
        means = [np.nanmean([r["per_class"].get(c) if r["per_class"].get(c) is not None else np.nan
                             for r in runs[name].values()]) for c in classes]
        lines.append(f"| {name} | " + " | ".join("-" if np.isnan(m) else f"{m:.3f}" for m in means) + " |")
    return lines, classes


def plot(runs: dict[str, dict[int, dict[str, Any]]], names: list[str], classes: list[str], key: str, label: str,
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.array([[np.nanmean([r["per_class"].get(c) if r["per_class"].get(c) is not None else np.nan
                                  for r in runs[n].values()]) for c in classes] for n in names])
    diffs = [difference(runs, n, ENTRIES[n].baseline, key) for n in names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8 + 0.6 * len(classes), 0.32 * len(names) + 2.2),
                                   gridspec_kw={"width_ratios": [len(classes), 5]})
    ax1.imshow(np.nan_to_num(grid), cmap="viridis", vmin=0, vmax=max(0.01, float(np.nanmax(grid))), aspect="auto")
    for i in range(len(names)):
        for j in range(len(classes)):
            ax1.text(j, i, "-" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}", ha="center", va="center",
                     fontsize=6, color="white")
    ax1.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    ax1.set_yticks(range(len(names)), names, fontsize=7)
    ax1.set_title(f"per-class {label} (mean over seeds; rare classes right)", fontsize=8)
    means = [d[0] if d else 0.0 for d in diffs]
    spreads = [d[1] if d else 0.0 for d in diffs]
    ax2.barh(range(len(names)), means, xerr=spreads, color=["#2ca02c" if m > 0 else "#d62728" for m in means])
    ax2.axvline(0, color="black", linewidth=0.8)
    ax2.set_yticks(range(len(names)), [])
    # both on the heat map's rows (autoscaled, the bars' padded limits drift where baselines have none)
    for ax in (ax1, ax2):
        ax.set_ylim(len(names) - 0.5, -0.5)
    ax2.set_title(f"Δ{key} vs its baseline (± std over seeds)", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def order_classes(runs: dict[str, dict[int, dict[str, Any]]], name: str) -> list[str]:
    first = next(iter(runs[name].values()))
    rank = {"frequent": 0, "common": 1, "rare": 2}
    return sorted(first["per_class"], key=lambda c: rank.get(first["groups"].get(c) or "", 3))


def section(title: str, runs: dict[str, dict[int, dict[str, Any]]], names: list[str], columns: tuple[str, ...],
            key: str, label: str, png: Path) -> tuple[list[str], list[tuple[str, str, str, str, str]]]:
    names = [n for n in names if n in runs]
    if not names:
        return [], []
    lines = [f"## {title}", "", *table(runs, names, columns), ""]
    per_class, _ = per_class_table(runs, names)
    lines += [f"Per-class {label} (mean over seeds; frequency group in brackets):", "", *per_class, "",
              f"![{title}]({png.name})", ""]
    plot(runs, names, order_classes(runs, names[0]), key, label, png)
    claims = []
    for n in names:
        e = ENTRIES[n]
        if e.claim:
            d = difference(runs, n, e.baseline, e.metric)
            v = ("not measurable: 0 for both on every seed" if at_floor(runs, n, e.baseline, e.metric)
                 else verdict(d, e.kind))
            claims.append((n, e.claim, e.metric, fmt(d[0], d[1], signed=True) if d else "-", v))
    return lines, claims


def sessions_table(runs: dict[str, dict[str, dict[int, dict[str, Any]]]]) -> list[str]:
    """Each sweep's time (its ``timings.jsonl``: training, and everything else) and the lone
    (segmentation) runs' summed seconds."""
    sweeps = sorted({r["sweep"] for d in runs.values() for s in d.values() for r in s.values() if r["sweep"]})
    lone = [r["seconds"] for d in runs.values() for s in d.values() for r in s.values() if not r["sweep"]]
    lines = ["Time per sweep (each sweep's SWEEP.md has its verdict), and the machines its invocations ran on:", "",
             "| sweep | invocations | training | planning, scoring, reports | machine |", "|---|---|---|---|---|"]
    for sweep in sweeps:
        t = totals(sweep)
        lines.append(f"| {_shown(sweep)} | {t['invocations']} | {t['training'] / 60:.1f} min |"
                     f" {t['bookkeeping'] / 60:.1f} min | {'; '.join(machines(sweep))} |")
    if lone:
        lines.append(f"| (segmentation runs) | - | {sum(lone) / 60:.1f} min ({len(lone)} runs, summed) | - | - |")
    return [*lines, ""]


def _shown(path: Path) -> str:
    """A path as the repository names it, where it is in the repository."""
    return path.resolve().relative_to(REPO).as_posix() if path.resolve().is_relative_to(REPO) else str(path)


def header(runs: Runs, commands: list[str], notes: Sequence[str]) -> list[str]:
    """The matrix's size and schedule, each sweep's time, the commands, the notes, and what is missing."""
    every = [(n, r) for d in runs.values() for n, s in d.items() for r in s.values()]
    det_iters = sorted({r["iters"] for n, r in every if n in ENTRIES and ENTRIES[n] in DETECTION})
    seg_iters = sorted({r["iters"] for n, r in every if n in ENTRIES and ENTRIES[n] in SEGMENTATION})
    lines = ["# Efficacy: what each remedy does to the rare classes", "",
             f"{len(every)} runs, {sum(r['seconds'] for _, r in every) / 3600:.2f} h of training and evaluation"
             f" summed over runs; iterations per detection run: {', '.join(map(str, det_iters)) or '-'}, per"
             f" segmentation run: {', '.join(map(str, seg_iters)) or '-'}. Every entry of a table trains on the same"
             " data with the same schedule; differences are paired by seed (mean ± std over seeds). Groups follow"
             " LVIS: rare <= 10 training images < common <= 100 < frequent. Segmentation scores pool each class's"
             " pixels over the validation split (`*_global`).", "",
             *sessions_table(runs), "Commands:", "", "```", *commands, "```", ""]
    lines += [line for note in notes for line in (f"**Note**: {note}", "")]
    counts = [len(s) for d in runs.values() for s in d.values()]
    missing = [f"{d}/{e.name}" for d in sorted(runs) for e in DETECTION if e.name not in runs[d]]
    if counts and (min(counts) < 3 or missing):
        lines += [f"**Partial matrix**: {min(counts)} to {max(counts)} seeds per entry"
                  + (f"; not in these results: {', '.join(missing)}" if missing else "")
                  + ". Verdicts with fewer than 3 seeds are provisional; `run.py` resumes a stopped matrix.", ""]
    return lines


def sections(runs: Runs, out: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    """Each dataset's detection and segmentation tables, per-class tables and plots (written to
    ``out``), and the papers' claims checked on them."""
    lines: list[str] = []
    claims: list[tuple[str, ...]] = []
    for dataset in sorted(runs):
        sec, found = section(f"Detection on {dataset}", runs[dataset], [e.name for e in DETECTION], DET_COLUMNS,
                             "APr", "AP", out / f"detection_{dataset}.png")
        reports = sorted({r["sweep"] / "SWEEP.md" for s in runs[dataset].values() for r in s.values() if r["sweep"]})
        if sec and reports:
            sec += ["Paired bootstrap intervals over the validation images, and the verdict on the confirmation"
                    " half: " + ", ".join(f"[{r.parent.name}]({os.path.relpath(r, out)})" for r in reports) + ".", ""]
        lines += sec
        claims += [(dataset, *c) for c in found]
        sec, found = section(f"Segmentation on {dataset}", runs[dataset], [e.name for e in SEGMENTATION],
                             SEG_COLUMNS, "Dicer_global", "Dice", out / f"segmentation_{dataset}.png")
        lines += sec
        claims += [(dataset, *c) for c in found]
    if claims:
        lines += ["## The papers' claims, checked in direction", "",
                  "| dataset | method | claim | metric | Δ vs its baseline | verdict |", "|---|---|---|---|---|---|",
                  *(f"| {' | '.join(c)} |" for c in claims), ""]
    return lines, claims


Candidate = tuple[str, str, tuple[float, float, int], tuple[float, float, int]]  # dataset, entry, ΔAPr, ΔAPc


def picks(here: list[Candidate]) -> list[tuple[str, Candidate, int]]:
    """The lines to write for one dataset: (label, candidate, column of the figure it tops)."""
    top_r, top_c = (max(here, key=lambda b: b[col][0]) for col in (2, 3))
    # one line for both only where both rose: a fold must not hide an APc gain behind an APr loss
    fold = top_r is top_c and top_r[2][0] > 0 and top_r[3][0] > 0
    chosen = [("best for APr and APc", top_r, 2)] if fold else [("best for APr", top_r, 2), ("best for APc", top_c, 3)]
    combos = [b for b in here if ENTRIES[b[1]].family in ("published", "combined")]
    if combos:
        top_combo = max(combos, key=lambda b: b[2][0])
        if top_combo is top_r:
            chosen[0] = (chosen[0][0] + ", a combination", top_r, 2)
        else:
            chosen.append(("best combination for APr", top_combo, 2))
    return chosen


def best_remedy(runs: Runs) -> list[str]:
    """Per dataset, the entry that raises APr most and the one that raises APc most, with their costs."""
    best: list[Candidate] = []
    for dataset in sorted(runs):
        for e in DETECTION:
            if e.name in runs[dataset] and e.baseline == "baseline":
                r, c = (difference(runs[dataset], e.name, "baseline", k) for k in ("APr", "APc"))
                if r and c:
                    best.append((dataset, e.name, r, c))
    if not best:
        return []
    lines = ["## Best remedy for the rare classes", "",
             "Against the Faster R-CNN baseline, paired by seed; each line gives the remedy's change on every"
             " column, so a tail gain paid for in APf shows.", ""]
    for dataset in sorted({b[0] for b in best}):
        for label, top, col in picks([b for b in best if b[0] == dataset]):
            if top[col][0] <= 0:
                lines.append(f"- {dataset}, {label}: none raised it over the baseline.")
                continue
            lines.append(f"- {dataset}, {label}: `{top[1]}` ({top[col][2]} seeds):"
                         f" {tradeoff(runs[dataset], top[1], DET_COLUMNS)}.")
            part = ENTRIES[top[1]].builds_on
            if part and part in runs[dataset]:
                lines.append(f"  Over `{part}` alone: {tradeoff(runs[dataset], top[1], DET_COLUMNS, part)}.")
    return [*lines, ""]


def did_not_help(claims: list[tuple[str, ...]]) -> list[str]:
    failed = [c for c in claims if c[-1].startswith("not ")]
    if not failed:
        return []
    return ["## Where a method did not help", "",
            "Mean difference at or below zero on the metric its paper claims to raise (below by more than the"
            " spread where it claims to match), or that metric at 0 for the method and its baseline alike:", "",
            *(f"- {c[0]}: `{c[1]}` ({c[3]} {c[4]}; {c[5]})" for c in failed), ""]


def write_results(roots: Sequence[Path], out: Path, commands: list[str], notes: Sequence[str] = ()) -> Path:
    """RESULTS.md (and its plots) in ``out`` from the finished runs under ``roots``."""
    runs = load(roots)
    body, claims = sections(runs, out)
    path = out / "RESULTS.md"
    atomic_write_text(path, "\n".join([*header(runs, commands, notes), *body, *best_remedy(runs),
                                       *did_not_help(claims)]))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", nargs="+", default=[str(REPO / "benchmarks/efficacy/sweeps")],
                   help="folders holding the runs: run.py's, and other sweeps of the same datasets and schedule")
    p.add_argument("--out", default=str(REPO / "benchmarks/efficacy"))
    p.add_argument("--command", action="append", default=[], help="a command line to record in RESULTS.md")
    p.add_argument("--note", action="append", default=[],
                   help="a paragraph to record under the commands (e.g. where results at another schedule are)")
    args = p.parse_args(argv)
    commands = args.command or ["python benchmarks/efficacy/run.py", "python benchmarks/efficacy/report.py"]
    print(write_results([Path(r) for r in args.results], Path(args.out), commands, args.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
