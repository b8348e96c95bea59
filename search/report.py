"""What a finished search hands back: pareto.json, report.md with plots, and the search's part of best/summary.json.

Reporting only reads results and writes files: choosing what to train and export is the search task's step
(``search/tasks/search.py``), done before the report is written.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from compiler.backends.export import EXPORTERS
from search.journal import atomic_write_json
from search.objectives import FEASIBLE, ObjectiveSet, pareto_indices

log = logging.getLogger("search")


def pareto_front(records: Sequence[Mapping[str, Any]], objectives: ObjectiveSet) -> list[Mapping[str, Any]]:
    metrics = [r["metrics"] for r in records]
    return [records[i] for i in pareto_indices(metrics, objectives)]


def best_record(records: Sequence[Mapping[str, Any]], objectives: ObjectiveSet) -> Mapping[str, Any] | None:
    """The best record, taken on the Pareto front (``ObjectiveSet.best_of``): the best primary objective, ties broken
    by the other objectives in order (or the best weighted sum), then the earliest evaluation."""
    index = objectives.best_of([r["metrics"] for r in records])
    return None if index is None else records[index]


def best_rule(objectives: ObjectiveSet) -> str:
    """How the best record is chosen, in words (for report.md)."""
    names = objectives.names
    most = "highest" if objectives.primary.direction == "max" else "lowest"
    if objectives.weighted:
        terms = " ".join(f"{'+' if o.direction == 'max' else '-'} {o.weight:g} * {o.name}"
                         for o in objectives.objectives)
        return f"the member of the Pareto front with the largest {terms.removeprefix('+ ')} (`scalarize: weighted`)"
    if len(names) == 1:
        return f"the architecture with the {most} {names[0]}, the earliest one on a tie"
    return (f"the member of the Pareto front with the {most} {names[0]}, ties broken by {', then '.join(names[1:])} "
            "(`scalarize: ranked`)")


def headline_metrics(metrics: Mapping[str, Any], objectives: ObjectiveSet) -> list[tuple[str, Any]]:
    """The objectives in their configured order, then params and macs: the same order in every report line,
    whatever order the metrics were stored in (a resumed run reads them back sorted)."""
    names = objectives.names + [n for n in ("params", "macs") if n not in objectives.names]
    return [(n, metrics[n]) for n in names if n in metrics]


def record_best(record: Mapping[str, Any], space: Any, final: Mapping[str, Any], best_dir: Path) -> None:
    """Add the search's view of the best architecture (its genotype, decisions, search metrics and final training)
    to the summary.json that exporting it wrote into ``best_dir``."""
    summary = json.loads((best_dir / "summary.json").read_text())
    summary["search"] = {"genotype": record["genotype"], "decisions": space.describe(record["genotype"]),
                         "search_metrics": record["metrics"], "final": dict(final)}
    atomic_write_json(best_dir / "summary.json", summary)


def _plots(records: Sequence[Mapping[str, Any]], front: Sequence[Mapping[str, Any]], objectives: ObjectiveSet,
           out: Path, fmt: str = "png") -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    primary = objectives.primary
    ok = [r for r in records if objectives.fitness(r["metrics"]).tier == FEASIBLE]
    if ok:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r["index"] + 1 for r in ok]
        ys = [r["metrics"][primary.name] for r in ok]
        ax.scatter(xs, ys, s=12, alpha=0.5, label="evaluated")
        best, curve = None, []
        for r in records:
            value = r["metrics"].get(primary.name) if r in ok else None
            if value is not None and (best is None or primary.signed(value) > primary.signed(best)):
                best = value
            curve.append(best)
        ax.step(range(1, len(records) + 1), curve, where="post", color="C3", label="best so far")
        ax.set_xlabel("evaluations")
        ax.set_ylabel(primary.name)
        ax.set_title("search progress")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"progress.{fmt}", dpi=120)
        plt.close(fig)
        made.append(f"progress.{fmt}")
    names = objectives.names
    if ok and len(names) > 1:  # one objective has no front to draw: its "front" is the best value, tied
        # Pareto plot: the second objective across, the primary one up (further objectives are not drawn)
        x_name, y_name = names[1], names[0]
        fig, ax = plt.subplots(figsize=(6, 4))
        points = [(r["metrics"][x_name], r["metrics"][y_name]) for r in ok]
        ax.scatter(*zip(*points), s=12, alpha=0.4, label="evaluated")
        on_front = sorted((r["metrics"][x_name], r["metrics"][y_name]) for r in front)
        if on_front:
            ax.plot(*zip(*on_front), "o-" if len(names) == 2 else "o", color="C3",
                    label="Pareto front" if len(names) == 2 else f"Pareto front (of {len(names)} objectives)")
        if x_name in ("params", "macs"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())  # the minor ticks' labels overlap
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
        ax.set_title("Pareto front")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"pareto.{fmt}", dpi=120)
        plt.close(fig)
        made.append(f"pareto.{fmt}")
    return made


def format_value(value: Any) -> str:
    """A metric as reports print it: booleans as words, floats to 4 digits, integers with thousands separators."""
    if isinstance(value, bool):  # before int: bool is an int, and would print as 0/1
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_report(records: Sequence[Mapping[str, Any]], space: Any, objectives: ObjectiveSet, out: Path, *,
                 final: Mapping[str, Any] | None = None, best_exported: bool = False, notes: Sequence[str] = (),
                 export_formats: Sequence[str] = ()) -> dict[str, Any]:
    """pareto.json, report.md and its plots in ``out``, from the records of a search. ``final``: the final training's
    metrics of the best architecture (None: none was run); ``best_exported``: the task wrote the best architecture
    to ``out/best`` (``export_formats`` there too): its summary.json gets the search's part. ``notes``: markdown
    lines a strategy adds after the summary (DARTS: its supernet, weights and warnings)."""
    out.mkdir(parents=True, exist_ok=True)
    front = pareto_front(records, objectives)
    best = best_record(records, objectives)
    atomic_write_json(out / "pareto.json", [
        {"index": r["index"], "best": r is best, "genotype": r["genotype"], "decisions": space.describe(r["genotype"]),
         "metrics": r["metrics"], "arch": r["arch"]} for r in front])
    final = dict(final or {})
    if best is not None and best_exported:
        record_best(best, space, final, out / "best")
    plots = _plots(records, front, objectives, out)
    single = len(objectives.objectives) == 1
    if single:
        (out / "pareto.png").unlink(missing_ok=True)  # left by an earlier run of several objectives
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    names = objectives.names
    columns = names + [n for n in ("params",) if n not in names]
    stopped = sum("stopped_epoch" in r["metrics"] for r in records)
    lines = [f"# Search report: {space.name}", "",
             f"{len(records)} architectures evaluated ({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}); "
             f"objectives: {', '.join(f'{o.direction} {o.name}' for o in objectives.objectives)}"
             + (f"; constraints: {', '.join(map(str, objectives.constraints))}" if objectives.constraints else "")
             + f"; total evaluation time {sum(r['seconds'] for r in records):.1f} s."
             + (f" {stopped} stopped early by the median rule." if stopped else ""), "", *notes]
    if best is not None:
        headline = headline_metrics(best["metrics"], objectives)
        lines += ["## Best architecture", "", f"Evaluation {best['index']}: "
                  + ", ".join(f"{k} = {format_value(v)}" for k, v in headline) + ".",
                  "", f"Chosen as {best_rule(objectives)}.", "",
                  "Decisions: " + ", ".join(f"`{k}` = `{v}`" for k, v in space.describe(best["genotype"]).items()), ""]
        if final:
            lines += ["Final training: " + ", ".join(f"{k} = {format_value(v)}" for k, v in final.items()
                                                      if isinstance(v, (int, float, str))), ""]
        lines += ["Files: `best/arch.arch` (the architecture, recompilable), `best/model.py` (standalone PyTorch, "
                  "`build_model()`), `best/summary.json`" + (", `best/weights.pt`" if final.get("weights") else "")
                  + "".join(f", `best/{EXPORTERS[f].filename}`" for f in export_formats) + ".", ""]
    for plot in plots:
        lines += [f"![{plot}]({plot})", ""]
    if single:
        lines += [f"## Tied at the best {names[0]}", "",
                  f"One objective, so no Pareto front is drawn (`progress.png` only); `pareto.json` lists the "
                  f"{len(front)} architecture(s) tied at the best {names[0]}.", ""]
    else:
        lines += ["## Pareto front", "", f"{len(front)} architecture(s) that no other feasible one dominates; "
                  "`pareto.json` holds them, with `\"best\": true` on the best one.", ""]
    lines += ["| # | " + " | ".join(columns) + " | decisions |", "|---" * (len(columns) + 2) + "|"]
    for r in front:
        m = r["metrics"]
        lines.append(f"| {r['index']} | " + " | ".join(format_value(m.get(n)) for n in columns) + " | "
                     + ", ".join(f"{k}={v}" for k, v in space.describe(r["genotype"]).items()) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return {"best": best, "front": front, "final": final}
