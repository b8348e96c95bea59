"""What a DARTS run adds to the common outputs: the architecture weights' history (alphas.json, alphas.png) and
the DARTS section of report.md (supernet size, memory, the derived choices, warnings)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from compiler.supernet import Supernet
from search.journal import atomic_write_json


def alpha_history(supernet: Supernet, history: Sequence[Mapping[str, Any]],
                  selection: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """JSON form: per epoch, the softmax of every relaxed decision by name, with the run's losses; and how the
    architecture was derived when it was not by the largest weight (``selection``: perturbation.py's steps)."""
    names = [r.name for r in supernet.relaxed]
    return {**({"selection": dict(selection)} if selection else {}),
        "decisions": [{"name": r.name, "kind": r.decision.kind, "options": list(r.options), "sites": r.sites,
                       "zero": list(r.zero), "parameter_free": list(r.param_free)} for r in supernet.relaxed],
        "epochs": [{**{k: v for k, v in h.items() if k != "softmax"},
                    "softmax": {name: list(p) for name, p in zip(names, h["softmax"])}} for h in history],
    }


def write_alpha_history(supernet: Supernet, history: Sequence[Mapping[str, Any]], out: Path,
                        selection: Mapping[str, Any] | None = None, fmt: str = "png") -> list[str]:
    """alphas.json and the plot: one panel per decision, one line per option (probability against epoch)."""
    atomic_write_json(out / "alphas.json", alpha_history(supernet, history, selection))
    if not history or not supernet.relaxed:
        return ["alphas.json"]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    relaxed = supernet.relaxed
    columns = min(4, len(relaxed))
    rows = math.ceil(len(relaxed) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.2 * rows + 0.8), squeeze=False, sharey=True)
    epochs = [h["epoch"] for h in history]
    for index, ax in enumerate(axes.flat):
        if index >= len(relaxed):
            ax.axis("off")
            continue
        decision = relaxed[index]
        for k, option in enumerate(decision.options):
            ax.plot(epochs, [h["softmax"][index][k] for h in history], label=option, color=f"C{k % 10}",
                    linestyle="--" if decision.param_free[k] else "-")
        ax.set_title(decision.name, fontsize=8)
        ax.tick_params(labelsize=7)
    same_options = len({r.options for r in relaxed}) == 1
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if same_options:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
    else:
        for ax in axes.flat[:len(relaxed)]:
            ax.legend(fontsize=5)
    fig.suptitle("architecture weights (softmax) per epoch; dashed: parameter-free options", fontsize=9)
    fig.tight_layout(rect=(0, 0.08 if same_options else 0, 1, 0.97))
    fig.savefig(out / f"alphas.{fmt}", dpi=110)
    plt.close(fig)
    return ["alphas.json", f"alphas.{fmt}"]


def report_notes(supernet: Supernet, history: Sequence[Mapping[str, Any]], choices: Sequence[int],
                 memory_line: str, warnings: Sequence[str], search_seconds: float,
                 cost_metric: str | None, method: str = "") -> list[str]:
    """Markdown lines for report.md's DARTS section."""
    last = history[-1] if history else {}
    lines = ["## DARTS", ""] + ([f"Method: {method}.", ""] if method else [])
    for warning in warnings:
        lines += ["**Warning**:", "", "```", warning, "```", ""]
    lines += [f"Supernet (`supernet.py`): {memory_line}.", "",
              f"{len(history)} epochs in {search_seconds:.1f} s; last epoch: supernet validation accuracy "
              f"{_pct(last.get('val_acc'))}, training accuracy {_pct(last.get('train_acc'))}"
              + (f", expected {cost_metric} {last['expected_cost']:,.4g}" if "expected_cost" in last else "") + ".",
              "", "![alphas.png](alphas.png)", "",
              "| decision | derived | weight | parameter-free |", "|---|---|---|---|"]
    for k, (decision, choice) in enumerate(zip(supernet.relaxed, choices)):
        weight = last["softmax"][k][choice] if last else float("nan")
        lines.append(f"| {decision.name} | `{decision.options[choice]}` | {weight:.3f} | "
                     f"{'yes' if decision.param_free[choice] else 'no'} |")
    fixed = [f"`{supernet.space.decisions[p].name}` = `{supernet.space.decisions[p].options[o]}`"
             for p, o in sorted(supernet.fixed.items())]
    if fixed:
        lines += ["", "Fixed (not relaxed): " + ", ".join(fixed)]
    return lines + [""]


def _pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"
