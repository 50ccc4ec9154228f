"""``kanvision-compare``: one report comparing finished training runs, kanvision models against timm baselines.

    kanvision-compare logs/train/runs --out reports/imagenet
    kanvision-compare run_a run_b --pairs kat_tiny_patch16_224=vit_tiny_patch16_224
    kanvision-compare run_a run_b --benchmark benchmarks/results/<file>.json --benchmark-filter compiled=false

Reads every run directory written by ``kanvision-train`` (``metrics.json``, and Hydra's ``.hydra/`` files for the
experiment, dataset and image size; a directory without ``metrics.json`` is searched recursively) and writes into
``--out``:

- ``compare.md``: each KAN model against its baseline (the experiment's ``baseline:`` or ``--pairs``; same dataset):
  the difference in top-1 and the ratios of parameters, GFLOPs, training img/s and peak memory; then one table per
  dataset (top-1/top-5 in %, EMA top-1, loss, parameters, GFLOPs, img/s, peak memory), sorted by top-1, runs
  labelled by model name; the plots below;
- ``compare.json``: ``runs`` and ``pairs``, machine-readable;
- ``top1_vs_params.png`` and ``top1_vs_img_per_s.png`` (one panel per dataset, log x axis, labels placed so that
  they do not overlap, an arrow from each baseline to its KAN model).

A run stopped by ``trainer.max_steps`` between two validations has no final validation metric in ``metrics.json``;
its last validation value logged by the CSV logger is used instead (column "top-1 from").

Parameters come from ``metrics.json`` (``num_params``), else from the run's exported ``model.safetensors`` metadata
or its config (the network is then built on the meta device, no memory). Training throughput comes from a benchmark
JSON (``--benchmark``; any entries with ``model`` and ``img_per_s``, e.g. ``python -m kanvision.bench.throughput
--json``) when it has the run's model, else from the run itself (``train/img_per_s``: images per second over all
processes, measured by ``kanvision-train`` on its own hardware); the ``img/s from`` column says which.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

__all__ = [
    "Run",
    "Pair",
    "find_run_dirs",
    "load_run",
    "read_benchmarks",
    "parse_pairs",
    "pair_runs",
    "markdown_report",
    "place_labels",
    "plot_runs",
    "compare",
    "main",
]

PLOTS = {"params": "top1_vs_params.png", "img_per_s": "top1_vs_img_per_s.png"}


@dataclass
class Run:
    """One finished run; accuracies are fractions in [0, 1], ``None`` where the run did not record them."""

    path: str
    label: str
    model: str
    family: str
    dataset: str
    img_size: int | None
    num_params: int | None
    top1: float | None
    top5: float | None
    loss: float | None
    ema_top1: float | None
    test_top1: float | None
    img_per_s: float | None
    img_per_s_source: str | None
    epochs: int | None
    world_size: int | None
    baseline: str | None = None
    gflops: float | None = None
    peak_mem_bytes: int | None = None
    global_step: int | None = None
    top1_source: str = "metrics.json"


# --------------------------------------------------------------------------------------------------- reading
def _is_eval_run(run: Path) -> bool:
    config = run / ".hydra" / "config.yaml"
    return config.is_file() and OmegaConf.load(config).get("task_name") == "eval"


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories (holding ``metrics.json``) among ``paths`` and below them, in order, without duplicates."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "metrics.json").is_file():
            runs = [path]
        elif path.is_dir():  # kanvision-eval writes metrics.json too: a search keeps training runs only
            runs = sorted(p.parent for p in path.rglob("metrics.json") if not _is_eval_run(p.parent))
        else:
            raise ValueError(f"{path} does not exist; give run directories written by kanvision-train")
        if not runs:
            raise ValueError(f"{path} is not a finished run (no metrics.json) and holds none below it")
        found += [r for r in runs if r not in found]
    return found


def _load_yaml(path: Path) -> DictConfig | None:
    return OmegaConf.load(path) if path.is_file() else None


def _select(cfg: DictConfig | None, key: str) -> Any:
    """``cfg.key`` or None: missing, or an interpolation that cannot resolve outside the run (``${hydra:...}``)."""
    if cfg is None:
        return None
    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False, throw_on_missing=False)
    except Exception:  # noqa: BLE001  (a resolver that is not registered here, e.g. ${now:...})
        return None


def _number(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def model_family(name: str) -> str:
    """ "kanvision" for a model that kanvision registers with timm, "timm" for timm's own, else "unknown"."""
    import timm

    import kanvision  # noqa: F401  (registers kanvision's models)

    base = name.partition(".")[0]
    if not timm.is_model(base):
        return "unknown"
    return "kanvision" if timm.models.model_entrypoint(base).__module__.startswith("kanvision.") else "timm"


def _safetensors_metadata(path: Path) -> dict[str, Any] | None:
    """The checked ``kanvision`` metadata of the run's ``model.safetensors`` (else ``model_ema.safetensors``), None
    without either file; ValueError (naming the file) for one that cannot be read or holds bad metadata."""
    from kanvision.models._checkpoint import _safetensors_metadata as read_metadata

    for name in ("model.safetensors", "model_ema.safetensors"):
        if (path / name).is_file():
            return read_metadata(path / name)[0]
    return None


def _count_params_on_meta(name: str, kwargs: dict[str, Any]) -> int:
    import timm
    import torch

    import kanvision  # noqa: F401
    from kanvision.training.module import INIT_ONLY_KWARGS

    kwargs = {k: v for k, v in kwargs.items() if k not in INIT_ONLY_KWARGS}
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **kwargs)
    return sum(p.numel() for p in model.parameters())


def _num_classes_from_config(cfg: DictConfig) -> int | None:
    value = _select(cfg, "model.num_classes") or _select(cfg, "data.num_classes")
    if value:
        return int(value)
    target = _select(cfg, "data._target_") or ""
    return {"CIFAR10DataModule": 10, "CIFAR100DataModule": 100, "DigitsDataModule": 10}.get(target.rsplit(".")[-1])


def _num_params(path: Path, metrics: dict[str, Any], cfg: DictConfig | None, model: str) -> int | None:
    if isinstance(metrics.get("num_params"), int):
        return metrics["num_params"]
    try:
        meta = _safetensors_metadata(path)
        if meta:
            return _count_params_on_meta(meta["model_name"], dict(meta.get("model_kwargs") or {}))
        if cfg is not None and model:
            from kanvision.utils.safe_config import check_file_config

            kwargs = _select(cfg, "model.kwargs")
            kwargs = OmegaConf.to_container(kwargs, resolve=True) if kwargs is not None else {}
            # the run's config file is data: its model kwargs go to timm.create_model, so they may name no code
            source = f"run config {path / '.hydra' / 'config.yaml'}"
            kwargs = dict(check_file_config(kwargs, source, "model.kwargs", allow_targets=False))
            num_classes = _num_classes_from_config(cfg)
            if num_classes:
                kwargs["num_classes"] = num_classes
            in_chans = _select(cfg, "model.in_chans") or _select(cfg, "data.in_chans")
            if in_chans:
                kwargs["in_chans"] = int(in_chans)
            return _count_params_on_meta(model, kwargs)
    except Exception as exc:  # noqa: BLE001  (a report with a gap beats no report)
        log.warning("%s: could not count the parameters (%s: %s)", path, type(exc).__name__, exc)
    return None


def _dataset(cfg: DictConfig | None, hydra_cfg: DictConfig | None) -> str:
    choice = _select(hydra_cfg, "hydra.runtime.choices.data")
    if choice:
        return str(choice)
    target = _select(cfg, "data._target_")
    if target:
        return target.rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    return "unknown"


def _img_size(path: Path, cfg: DictConfig | None, model: str) -> int | None:
    try:
        meta = _safetensors_metadata(path)
    except ValueError as exc:  # a report with a gap beats no report: the run's config may still give the size
        log.warning("%s: could not read the model's metadata (%s)", path, exc)
        meta = None
    size = ((meta or {}).get("data_config") or {}).get("img_size") or _select(cfg, "data.img_size")
    if size is None and model:
        import timm

        pretrained = timm.get_pretrained_cfg(model.partition(".")[0])
        size = pretrained.input_size[-1] if pretrained is not None else None
    if isinstance(size, (list, tuple)) or OmegaConf.is_list(size):
        size = list(size)[-1]
    return int(size) if size else None


def _last_logged(path: Path, key: str) -> float | None:
    """The last value of ``key`` in the run's CSV logger files (``metrics.csv`` below the run directory)."""
    import csv

    last = None
    for file in sorted(path.rglob("metrics.csv")):
        with file.open(newline="") as f:
            for row in csv.DictReader(f):
                value = row.get(key)
                if value not in (None, ""):
                    try:
                        last = float(value)
                    except ValueError:
                        continue
    return last if last is not None and math.isfinite(last) else None


def load_run(path: str | Path, metric: str = "val/acc1") -> Run:
    """Read one run directory; ``metric`` is the accuracy reported as top-1 (``val/acc1`` or ``test/acc1``)."""
    path = Path(path)
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        raise ValueError(f"{path} has no metrics.json: not a finished kanvision-train run")
    try:
        metrics = json.loads(metrics_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{metrics_file} is not valid JSON ({exc})") from exc
    if not isinstance(metrics, dict):
        raise ValueError(f"{metrics_file} must hold a JSON object of metrics, got {type(metrics).__name__}")
    cfg = _load_yaml(path / ".hydra" / "config.yaml")
    hydra_cfg = _load_yaml(path / ".hydra" / "hydra.yaml")
    model = metrics.get("model") or _select(cfg, "model.name") or ""
    top5_key = metric.replace("acc1", "acc5")
    ema_key = metric.replace("/", "_ema/", 1)
    top1, top1_source = _number(metrics, metric), "metrics.json"
    if top1 is None:  # a run stopped by max_steps between validations: its last logged validation
        top1, top1_source = _last_logged(path, metric), "last logged"
    peak = metrics.get("peak_mem_bytes")
    return Run(
        path=str(path),
        label=str(model or path.name),
        model=str(model),
        family=model_family(model) if model else "unknown",
        dataset=_dataset(cfg, hydra_cfg),
        img_size=_img_size(path, cfg, model),
        num_params=_num_params(path, metrics, cfg, model),
        top1=top1,
        top5=_number(metrics, top5_key) if top5_key != metric else None,
        loss=_number(metrics, metric.rsplit("/", 1)[0] + "/loss"),
        ema_top1=_number(metrics, ema_key),
        test_top1=_number(metrics, "test/acc1"),
        img_per_s=_number(metrics, "train/img_per_s"),
        img_per_s_source="run" if _number(metrics, "train/img_per_s") else None,
        epochs=metrics.get("epochs"),
        world_size=metrics.get("world_size"),
        baseline=_select(cfg, "baseline"),
        gflops=_number(metrics, "gflops"),
        peak_mem_bytes=int(peak) if isinstance(peak, (int, float)) and not isinstance(peak, bool) else None,
        global_step=metrics.get("global_step"),
        top1_source=top1_source if top1 is not None else "–",
    )


def _walk(node: Any) -> Iterable[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def read_benchmarks(files: Sequence[str | Path], filters: Sequence[str] = ()) -> dict[str, float]:
    """Model name -> training img/s from benchmark JSON files: every object with ``model`` and ``img_per_s``,
    anywhere in the file, that matches all ``key=value`` filters (e.g. ``compiled=false``, ``device=cuda``).
    The first match per model wins."""
    wanted = []
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--benchmark-filter takes key=value, got {item!r}")
        wanted.append((key, value.lower()))
    result: dict[str, float] = {}
    for file in map(Path, files):
        if not file.is_file():
            raise ValueError(f"benchmark file {file} does not exist")
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"benchmark file {file} is not valid JSON ({exc})") from exc
        entries = 0
        for entry in _walk(data):
            model, value = entry.get("model"), entry.get("img_per_s")
            if not isinstance(model, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            entries += 1
            if all(str(entry.get(key)).lower() == value_ for key, value_ in wanted):
                result.setdefault(model, float(value))
        if not entries:
            raise ValueError(f"benchmark file {file} has no entries with 'model' and 'img_per_s'")
    return result


# --------------------------------------------------------------------------------------------------- pairing
@dataclass
class Pair:
    """A KAN run and the baseline run it is compared against (same dataset); ratios are KAN / baseline."""

    dataset: str
    model: str
    baseline: str
    model_path: str
    baseline_path: str
    delta_top1: float | None  # percentage points
    params_ratio: float | None
    gflops_ratio: float | None
    img_per_s_ratio: float | None
    peak_mem_ratio: float | None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def parse_pairs(items: Sequence[str]) -> dict[str, str]:
    """``MODEL=BASELINE`` strings (``--pairs``) as a dict."""
    pairs = {}
    for item in items:
        model, sep, baseline = item.partition("=")
        if not sep or not model or not baseline:
            raise ValueError(f"--pairs takes MODEL=BASELINE (timm model names), got {item!r}")
        pairs[model.strip()] = baseline.strip()
    return pairs


def pair_runs(runs: Sequence[Run], pairs: dict[str, str] | None = None) -> list[Pair]:
    """Pair every run whose model has a baseline (``pairs``, else the ``baseline`` of its experiment) with a run of
    that baseline on the same dataset, preferring the same image size."""
    pairs = dict(pairs or {})
    result = []
    for run in runs:
        baseline = pairs.get(run.model) or run.baseline
        if not baseline:
            continue
        candidates = [r for r in runs if r is not run and r.model == baseline and r.dataset == run.dataset]
        if not candidates:
            log.warning("%s (%s): no run of its baseline %s on %s", run.label, run.path, baseline, run.dataset)
            continue
        same_size = [r for r in candidates if r.img_size == run.img_size]
        base = (same_size or candidates)[0]
        result.append(
            Pair(
                dataset=run.dataset,
                model=run.label,
                baseline=base.label,
                model_path=run.path,
                baseline_path=base.path,
                delta_top1=None if run.top1 is None or base.top1 is None else 100 * (run.top1 - base.top1),
                params_ratio=_ratio(run.num_params, base.num_params),
                gflops_ratio=_ratio(run.gflops, base.gflops),
                img_per_s_ratio=_ratio(run.img_per_s, base.img_per_s),
                peak_mem_ratio=_ratio(run.peak_mem_bytes, base.peak_mem_bytes),
            )
        )
    return result


# --------------------------------------------------------------------------------------------------- writing
def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _fmt(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _by_dataset(runs: Sequence[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.dataset, []).append(run)
    for group in groups.values():
        group.sort(key=lambda r: (r.top1 is None, -(r.top1 or 0.0), r.label))
    return dict(sorted(groups.items()))


_COLUMNS = (
    "run", "model", "family", "img", "params (M)", "GFLOPs", "top-1 (%)", "top-1 from", "top-5 (%)",
    "EMA top-1 (%)", "loss", "test top-1 (%)", "train img/s", "img/s from", "peak mem (GiB)", "steps", "epochs",
    "processes",
)  # fmt: skip
_TEXT_COLUMNS = {"run", "model", "family", "img/s from", "top-1 from"}
_PAIR_COLUMNS = (
    "KAN run", "baseline run", "Δ top-1 (points)", "params ×", "GFLOPs ×", "train img/s ×", "peak mem ×",
)  # fmt: skip


def _row(run: Run) -> list[str]:
    return [
        run.label,
        f"`{run.model}`",
        run.family,
        _fmt(run.img_size, "d"),
        _fmt(None if run.num_params is None else run.num_params / 1e6, ".2f"),
        _fmt(run.gflops, ".3g"),
        _pct(run.top1),
        run.top1_source,
        _pct(run.top5),
        _pct(run.ema_top1),
        _fmt(run.loss, ".4f"),
        _pct(run.test_top1),
        _fmt(run.img_per_s, ",.0f"),
        run.img_per_s_source or "–",
        _fmt(None if run.peak_mem_bytes is None else run.peak_mem_bytes / 2**30, ".2f"),
        _fmt(run.global_step, "d"),
        _fmt(run.epochs, "d"),
        _fmt(run.world_size, "d"),
    ]


def _pair_row(pair: Pair) -> list[str]:
    return [
        pair.model,
        pair.baseline,
        _fmt(pair.delta_top1, "+.2f"),
        _fmt(pair.params_ratio, ".2f"),
        _fmt(pair.gflops_ratio, ".2f"),
        _fmt(pair.img_per_s_ratio, ".2f"),
        _fmt(pair.peak_mem_ratio, ".2f"),
    ]


def pairs_table(pairs: Sequence[Pair]) -> list[str]:
    """Markdown lines of the KAN-vs-baseline table (ratios are KAN / baseline)."""
    lines = ["| dataset | " + " | ".join(_PAIR_COLUMNS) + " |", "|---|---|---|" + "---:|" * (len(_PAIR_COLUMNS) - 2)]
    return lines + [f"| {p.dataset} | " + " | ".join(_pair_row(p)) + " |" for p in pairs]


def markdown_report(
    runs: Sequence[Run],
    metric: str,
    plots: dict[str, str],
    benchmarks: Sequence[str] = (),
    pairs: Sequence[Pair] = (),
) -> str:
    """The report: KAN models against their baselines, a table per dataset, then the plots (relative paths)."""
    lines = [
        "# kanvision-compare",
        "",
        f"{len(runs)} runs. top-1 is `{metric}` of each run's metrics.json (final epoch), as %; EMA top-1 is the "
        "same metric of the EMA weights. Parameters of the network alone. train img/s: "
        + (f"from {', '.join(f'`{b}`' for b in benchmarks)} where it has the model, else " if benchmarks else "")
        + "measured by kanvision-train during the run (all processes together, that run's hardware). "
        "top-1 from 'last logged': the run stopped between validations (max_steps); its last logged value.",
    ]
    lines += ["", "## KAN models against their baselines", ""]
    if pairs:
        lines += [*pairs_table(pairs), "", "Ratios are KAN / baseline; Δ top-1 is KAN minus baseline."]
    else:
        lines.append("No pairs: set `baseline:` in the experiment or pass `--pairs MODEL=BASELINE`.")
    for dataset, group in _by_dataset(runs).items():
        lines += ["", f"## {dataset}", "", "| " + " | ".join(_COLUMNS) + " |"]
        lines.append("|" + "|".join("---" if c in _TEXT_COLUMNS else "---:" for c in _COLUMNS) + "|")
        lines += ["| " + " | ".join(_row(run)) + " |" for run in group]
    lines += ["", "## Plots", ""]
    for what, file in plots.items():
        title = "top-1 against parameters" if what == "params" else "top-1 against training img/s"
        lines.append(f"![{title}]({file})" if file else f"{title}: no run has this value.")
        lines.append("")
    return "\n".join(lines)


_LABEL_OFFSETS = [(dx, dy) for dy in (6, -14, 16, -24, 26, -34, 36, -44) for dx in (6, -6)]


def place_labels(ax, points: Sequence[tuple[float, float]], labels: Sequence[str], fontsize: int = 8) -> list:
    """Annotate each point with its label at the first of a set of offsets where the text overlaps neither an
    earlier label nor a marker; returns the labels' display-space bounding boxes."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    ax.autoscale_view()
    markers = []
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        markers.append(Bbox.from_extents(px - 4, py - 4, px + 4, py + 4))
    placed: list = []
    for (x, y), text in zip(points, labels, strict=True):
        for dx, dy in _LABEL_OFFSETS:
            note = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                ha="left" if dx > 0 else "right", va="bottom",
                arrowprops=dict(arrowstyle="-", color="0.6", lw=0.5) if abs(dy) > 16 else None,
            )  # fmt: skip
            box = note.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed + markers):
                break
            note.remove()
        else:  # every offset collides: keep the first one
            note = ax.annotate(text, (x, y), xytext=_LABEL_OFFSETS[0], textcoords="offset points", fontsize=fontsize)
            box = note.get_window_extent(renderer)
        placed.append(box)
    return placed


KIND_COLORS = {"baseline": "tab:blue", "KAN": "tab:red"}


def model_kind(run: Run) -> str:
    """ "KAN" for a model of kanvision's zoo, "baseline" for timm's own models and kanvision's plain baselines."""
    if run.family != "kanvision":
        return "baseline"
    import timm

    entry = timm.models.model_entrypoint(run.model.partition(".")[0])
    return "baseline" if entry.__module__ == "kanvision.models.baselines" else "KAN"


def _plain_number(value: float, _position=None) -> str:
    import numpy as np

    if value >= 1000:
        return f"{value:,.0f}"
    return np.format_float_positional(float(value), precision=4, fractional=False, trim="-")


def _readable_axis(ax, values: Sequence[float]) -> None:
    """Plain-number ticks: a log axis only where the values span more than a decade, and no minor-tick labels
    (matplotlib's log axis labels minor ticks as ``1.114x10^1`` within a decade, which overlap)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    low, high = min(values), max(values)
    if high / low > 10:
        ax.set_xscale("log")
        # 1-2-5 steps over a few decades; over more, only the powers of ten fit side by side
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if high / low <= 100 else (1.0,)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))


def figure_runs(runs: Sequence[Run], x: str, metric: str = "val/acc1", pairs: Sequence[Pair] = ()):
    """The figure of :func:`plot_runs` (``None`` when no run has both values); the caller closes it."""
    if x not in PLOTS:
        raise ValueError(f"x must be one of {sorted(PLOTS)}, got {x!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def x_value(run: Run) -> float | None:
        return None if run.num_params is None else run.num_params / 1e6 if x == "params" else run.img_per_s

    groups = {
        name: [r for r in group if r.top1 is not None and x_value(r)] for name, group in _by_dataset(runs).items()
    }
    groups = {name: group for name, group in groups.items() if group}
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(7.0 * len(groups), 5.0), squeeze=False)
    for ax, (dataset, group) in zip(axes[0], groups.items(), strict=True):
        kinds = {id(r): model_kind(r) for r in group}
        for kind in ("baseline", "KAN"):
            members = [r for r in group if kinds[id(r)] == kind]
            if not members:
                continue
            ax.scatter(
                [x_value(r) for r in members],
                [100 * r.top1 for r in members],
                color=KIND_COLORS[kind],
                label=kind,
                s=40,
                zorder=3,
            )
        by_path = {r.path: r for r in group}
        for pair in pairs:
            kan, base = by_path.get(pair.model_path), by_path.get(pair.baseline_path)
            if kan is not None and base is not None:
                ax.annotate(
                    "", (x_value(kan), 100 * kan.top1), (x_value(base), 100 * base.top1),
                    arrowprops=dict(arrowstyle="->", color="0.4", lw=1.0, shrinkA=5, shrinkB=5), zorder=2,
                )  # fmt: skip
        _readable_axis(ax, [x_value(r) for r in group])
        ax.margins(x=0.35, y=0.15)  # room for the labels
        ax.set_xlabel("parameters (millions)" if x == "params" else "training images / s")
        ax.set_ylabel(f"top-1 (%), {metric}")
        ax.set_title(f"dataset: {dataset}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        place_labels(ax, [(x_value(r), 100 * r.top1) for r in group], [r.label for r in group])
    return fig


def plot_runs(
    runs: Sequence[Run], x: str, path: str | Path, metric: str = "val/acc1", pairs: Sequence[Pair] = ()
) -> bool:
    """Scatter top-1 against ``x`` ("params" or "img_per_s"), one panel per dataset (titled with it), baselines and
    KAN models coloured apart with a legend entry each, plain-number axes, every point labelled with its model
    (labels placed so that they do not overlap), an arrow from each baseline to its KAN model. Returns False (and
    writes nothing) when no run has both values."""
    import matplotlib.pyplot as plt

    fig = figure_runs(runs, x, metric, pairs)
    if fig is None:
        return False
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def compare(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    metric: str = "val/acc1",
    benchmarks: Sequence[str | Path] = (),
    benchmark_filters: Sequence[str] = (),
    pairs: dict[str, str] | None = None,
) -> list[Run]:
    """Read the runs under ``paths``, write ``compare.md``, ``compare.json`` and the two plots into ``out_dir``."""
    if "acc1" not in metric:
        raise ValueError(f"--metric must be a top-1 accuracy key such as val/acc1 or test/acc1, got {metric!r}")
    runs = [load_run(p, metric) for p in find_run_dirs(paths)]
    speeds = read_benchmarks(benchmarks, benchmark_filters) if benchmarks else {}
    for run in runs:
        if run.model in speeds:
            run.img_per_s, run.img_per_s_source = speeds[run.model], "benchmark"
    _disambiguate(runs)
    if all(r.top1 is None for r in runs):
        raise ValueError(f"no run has {metric!r} in its metrics.json; choose another --metric")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paired = pair_runs(runs, pairs)
    plots = {
        what: file if plot_runs(runs, what, out_dir / file, metric, paired) else "" for what, file in PLOTS.items()
    }
    report = markdown_report(runs, metric, plots, [str(b) for b in benchmarks], paired)
    (out_dir / "compare.md").write_text(report + "\n")
    payload = {"runs": [asdict(r) for r in runs], "pairs": [asdict(p) for p in paired]}
    (out_dir / "compare.json").write_text(json.dumps(payload, indent=2) + "\n")
    return runs


def _disambiguate(runs: Sequence[Run]) -> None:
    """Runs share a label (their model name) when a model ran more than once: add the dataset, then the image
    size, then a number, whichever first tells them apart."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    for label, group in groups.items():
        if len(group) < 2:
            continue
        for describe in (lambda r: r.dataset, lambda r: f"{r.dataset}, {r.img_size} px"):
            names = [f"{label} ({describe(r)})" for r in group]
            if len(set(names)) == len(names):
                break
        else:
            names = [f"{label} #{k}" for k in range(1, len(group) + 1)]
        for run, name in zip(group, names, strict=True):
            run.label = name


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="kanvision-compare",
        description="Compare finished kanvision-train runs (kanvision models and timm baselines): a markdown table "
        "and PNG plots of top-1 against parameters and against training throughput.",
    )
    parser.add_argument("runs", nargs="+", help="run directories (with metrics.json), or folders to search for them")
    parser.add_argument("--out", default="compare", help="output folder (default: ./compare)")
    parser.add_argument("--metric", default="val/acc1", help="top-1 key of metrics.json (default: val/acc1)")
    parser.add_argument("--benchmark", action="append", default=[], help="benchmark JSON with model and img_per_s")
    parser.add_argument(
        "--benchmark-filter", action="append", default=[], help="key=value an entry must match, e.g. compiled=false"
    )
    parser.add_argument(
        "--pairs", nargs="+", default=[], metavar="MODEL=BASELINE",
        help="compare MODEL's runs against BASELINE's (default: the experiments' `baseline:`)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        runs = compare(args.runs, args.out, args.metric, args.benchmark, args.benchmark_filter, parse_pairs(args.pairs))
    except ValueError as exc:
        parser.error(str(exc))
    report = json.loads((Path(args.out) / "compare.json").read_text())
    pairs = [Pair(**p) for p in report["pairs"]]
    if pairs:
        print("\n".join(pairs_table(pairs)))
    print(f"{len(runs)} runs, {len(pairs)} pairs -> {Path(args.out) / 'compare.md'}")


if __name__ == "__main__":
    main()
