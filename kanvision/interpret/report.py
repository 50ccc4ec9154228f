"""A model's learned functions on data, in one directory: figures, ``report.json`` and ``report.md``.

For every function module: its inputs are recorded on the data, every function is scored (pykan's importance), the
``top_k`` most important are fitted with symbolic formulas and plotted over their observed range.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrize import type_before_parametrizations

from kanvision.interpret.importance import LayerImportance, function_importance
from kanvision.interpret.plots import plot_functions, plot_group_activations, plot_importance_heatmap
from kanvision.interpret.sampling import (
    InputRecord,
    collect_inputs,
    find_function_modules,
    function_shape,
    input_index,
    sample_functions,
)
from kanvision.interpret.symbolic import SymbolicFunction, suggest_layer
from kanvision.layers.group_activation import GroupActivation
from kanvision.layers.kan_layer import KANLayer
from kanvision.layers.rational import GroupRational

__all__ = ["inspect_model"]

QUANTILES = (0.01, 0.5, 0.99)


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _layer_entry(
    name: str,
    module: nn.Module,
    record: InputRecord,
    importance: LayerImportance,
    fits: dict,
    plots: list[str],
) -> dict[str, Any]:
    reads = input_index(module)
    pooled = record.samples.flatten().to(torch.float64)  # every input's samples together
    quantiles = torch.quantile(pooled, pooled.new_tensor(QUANTILES)).tolist()
    functions = []
    for idx, candidates in fits.items():
        channel = int(reads[idx[:2]])
        functions.append(
            {
                "index": list(idx),
                "input": channel,
                "importance": float(importance.edges[idx]),
                "input_range": [float(record.minimum[channel]), float(record.maximum[channel])],
                "fits": [fit.as_dict() for fit in candidates],
            }
        )
    return {
        "name": name,
        "type": type_before_parametrizations(module).__name__,  # KANConv2d, not its spline-scaled subclass
        "function_shape": list(function_shape(module)),
        "num_functions": importance.edges.numel(),
        "samples_per_input": record.count,
        "input_range": [float(record.minimum.min()), float(record.maximum.max())],
        "input_quantiles": dict(zip(("q01", "q50", "q99"), quantiles, strict=True)),
        "importance": {
            "total": float(importance.edges.sum()),
            "per_input": [float(v) for v in importance.per_input],
            "per_output": [float(v) for v in importance.per_output],
        },
        "functions": functions,
        "plots": plots,
    }


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Learned functions of {report['model']}",
        "",
        f"Data: {report['data']} ({report['num_inputs']} inputs). Importance: mean |phi| over the recorded inputs "
        "(pykan). Fits: a*f(b*x+c)+d on each function's observed input range.",
        "",
    ]
    for layer in report["layers"]:
        lines += [
            f"## {layer['name']} ({layer['type']}, functions {tuple(layer['function_shape'])})",
            "",
            f"Input range [{layer['input_range'][0]:.3g}, {layer['input_range'][1]:.3g}], "
            f"total importance {layer['importance']['total']:.4g}.",
            "",
            "| function | importance | input range | best fit | R² |",
            "|---|---|---|---|---|",
        ]
        for fn in layer["functions"]:
            best = fn["fits"][0] if fn["fits"] else {"formula": "-", "r2": float("nan")}
            lo, hi = fn["input_range"]
            lines.append(
                f"| {tuple(fn['index'])} | {fn['importance']:.4g} | [{lo:.3g}, {hi:.3g}] | `{best['formula']}` | "
                f"{best['r2']:.4f} |"
            )
        lines.append("")
        lines += layer.get("notes", []) + ([""] if layer.get("notes") else [])
        lines += [f"![{plot}]({plot})" for plot in layer["plots"]] + [""]
    return "\n".join(lines)


def inspect_model(
    model: nn.Module,
    batches: Iterable[Tensor],
    out_dir: str | os.PathLike,
    pattern: str | None = None,
    top_k: int = 8,
    num_points: int = 101,
    library: Sequence[str | SymbolicFunction] | None = None,
    max_samples: int = 4096,
    model_name: str = "",
    data_name: str = "",
) -> dict[str, Any]:
    """Record, score, fit and plot the functions of ``model`` on ``batches``; write everything to ``out_dir``.

    Writes per KAN layer ``<name>.functions.png`` (its ``top_k`` most important functions) and, for KAN layers with
    more than one input or output channel, ``<name>.importance.png`` (input x output heat map); one
    ``<parent>.rationals.png`` per module holding GroupRationals (a KAT block's MLP), ``<parent>.activations.png``
    per module holding GroupKANs (KAT-X); ``report.json`` and
    ``report.md``. Returns the report as a dict.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = find_function_modules(model, pattern)
    if not modules:
        what = f" matching {pattern!r}" if pattern else ""
        raise ValueError(f"{type(model).__name__} has no KAN layers, RKAN kernels or group rationals{what}")
    counted = []

    def counting(batches: Iterable[Tensor]):
        for batch in batches:
            counted.append(len(batch))
            yield batch

    records = collect_inputs(model, counting(batches), pattern, max_samples=max_samples)
    report: dict[str, Any] = {
        "model": model_name or type(model).__name__,
        "data": data_name,
        "num_inputs": sum(counted),
        "layers": [],
        "not_reached": [name for name in modules if name not in records],
    }
    group_panels: dict[tuple[str, str], dict] = {}  # (parent, "rationals" | "activations") -> panels
    for name, module in modules.items():
        if name not in records:
            continue
        record = records[name]
        importance = function_importance(module, record)
        top = importance.top(min(top_k, importance.edges.numel()))
        fits = suggest_layer(module, record=record, indices=top, library=library, num_points=num_points)
        samples = sample_functions(module, record, num_points=num_points, margin=0.15)
        plots, notes = [], []
        if isinstance(module, GroupActivation):
            parent, _, child = name.rpartition(".")
            kind = "rationals" if isinstance(module, GroupRational) else "activations"
            group_panels.setdefault((parent or name, kind), {})[child] = (samples, record, fits)
            plots.append(f"{_file_name(parent or name)}.{kind}.png")
        else:
            file = f"{_file_name(name)}.functions.png"
            title = f"{name}: top {len(top)} of {importance.edges.numel()} functions"
            plot_functions(samples, top, out_dir / file, record, module, fits, importance, title)
            plots.append(file)
            if isinstance(module, KANLayer) and importance.per_edge().numel() == 1:
                notes.append(
                    f"One input and one output channel: no importance heat map (its one value, summed over kernel "
                    f"positions: {float(importance.per_edge().sum()):.4g})."
                )
            elif isinstance(module, KANLayer):
                file = f"{_file_name(name)}.importance.png"
                plot_importance_heatmap(importance, out_dir / file, f"{name}: importance (input x output)")
                plots.append(file)
        entry = _layer_entry(name, module, record, importance, fits, plots)
        if notes:
            entry["notes"] = notes
        report["layers"].append(entry)
    for (parent, kind), panels in group_panels.items():
        title = f"{parent}: group {'rationals' if kind == 'rationals' else 'KAN activations'}"
        plot_group_activations(panels, out_dir / f"{_file_name(parent)}.{kind}.png", title)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(_markdown(report))
    return report
