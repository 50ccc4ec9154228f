"""Figures of learned functions and their importance (matplotlib's Agg canvas; pyplot's global state is not used)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from kanvision.interpret.importance import LayerImportance
from kanvision.interpret.sampling import FunctionSamples, InputRecord, input_index
from kanvision.interpret.symbolic import SymbolicFit

__all__ = ["plot_functions", "plot_group_activations", "plot_importance_heatmap"]

DPI = 72
DATA_COLOR = "tab:blue"
FIT_COLOR = "tab:red"


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)  # the saved image holds every label
    return path


def _short(text: str, length: int = 34) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def plot_functions(
    samples: FunctionSamples,
    indices: Sequence[tuple[int, ...]],
    path: str | os.PathLike,
    record: InputRecord | None = None,
    module=None,
    fits: Mapping[tuple[int, ...], Sequence[SymbolicFit]] | None = None,
    importance: LayerImportance | None = None,
    title: str = "",
    columns: int = 4,
) -> Path:
    """A grid of the functions ``indices`` (``(out, in, *kernel)``): the observed input range shaded (needs
    ``record`` and ``module``), the best symbolic fit dashed, the importance in each title."""
    if not indices:
        raise ValueError("plot_functions needs at least one function index")
    columns = max(1, min(columns, len(indices)))
    rows = math.ceil(len(indices) / columns)
    figure = _figure(3.0 * columns, 2.3 * rows + (0.3 if title else 0.0))
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    reads = input_index(module) if record is not None and module is not None else None
    for ax, idx in zip(axes, indices, strict=False):
        x, y = samples.x[idx[:2]], samples.y[idx]
        ax.plot(x.numpy(), y.numpy(), color=DATA_COLOR, linewidth=1.6)
        if reads is not None:
            channel = int(reads[idx[:2]])
            ax.axvspan(float(record.minimum[channel]), float(record.maximum[channel]), color=DATA_COLOR, alpha=0.12)
        label = f"phi{list(idx)}"
        if importance is not None:
            label += f"  s={float(importance.edges[idx]):.3g}"
        ax.set_title(label, fontsize=9)
        best = (fits or {}).get(tuple(idx))
        if best:
            fit = best[0]
            ax.plot(x.numpy(), fit(x).numpy(), "--", color=FIT_COLOR, linewidth=1.2)
            ax.set_xlabel(f"{_short(fit.formula, 44)}   R²={fit.r2:.4f}", fontsize=7, color=FIT_COLOR)
        ax.tick_params(labelsize=7)
    for ax in axes[len(indices) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def plot_group_activations(
    panels: Mapping[str, tuple[FunctionSamples, InputRecord | None, Mapping[tuple[int, ...], Sequence[SymbolicFit]]]],
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """One panel per group activation (GroupRational or GroupKAN, e.g. a KAT block's ``act1`` and ``act2``) with all
    its group functions, the inputs' observed range shaded and the best fit of each group dashed."""
    if not panels:
        raise ValueError("plot_group_activations needs at least one panel")
    figure = _figure(4.2 * len(panels), 3.4)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, (samples, record, fits)) in zip(axes, panels.items(), strict=True):
        groups = samples.y.shape[1]
        colors = [f"C{g % 10}" for g in range(groups)]
        for g in range(groups):
            ax.plot(samples.x[0, g].numpy(), samples.y[0, g].numpy(), color=colors[g], linewidth=1.4, label=f"g{g}")
            best = fits.get((0, g))
            if best:
                ax.plot(samples.x[0, g].numpy(), best[0](samples.x[0, g]).numpy(), "--", color=colors[g], lw=0.9)
        if record is not None:
            ax.axvspan(float(record.minimum.min()), float(record.maximum.max()), color="0.5", alpha=0.12)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, ncols=2, loc="best")
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def plot_importance_heatmap(importance: LayerImportance, path: str | os.PathLike, title: str = "") -> Path:
    """The (input, output) importance matrix, summed over kernel positions; sized to its cells (0.25 in each, within
    3 to 12 in). A 1 x 1 matrix has nothing to compare: ``ValueError`` (the report states the value instead)."""
    matrix: Tensor = importance.per_edge().T  # (in, out)
    rows, cols = matrix.shape
    if rows * cols == 1:
        raise ValueError("a 1 x 1 importance matrix needs no heat map: report its value")
    figure = _figure(min(12.0, max(4.5, 2.0 + 0.25 * cols)), min(12.0, max(3.0, 1.2 + 0.25 * rows)))
    ax = figure.subplots()
    image = ax.imshow(matrix.to(torch.float64).numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("output")
    ax.set_ylabel("input")
    ax.tick_params(labelsize=7)
    figure.colorbar(
        image, ax=ax, label="mean |phi|" + (", summed over kernel positions" if importance.edges.dim() > 2 else "")
    )
    if title:
        ax.set_title(title, fontsize=9)
    return _save(figure, path)
