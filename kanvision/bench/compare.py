"""``kanvision-compare``: one report comparing finished training runs, kanvision models against timm baselines.

    kanvision-compare logs/train/runs --out reports/imagenet
    kanvision-compare run_a run_b --benchmark benchmarks/results/gpu-2026-11-28.json --benchmark-filter compiled=false

Reads every run directory written by ``kanvision-train`` (``metrics.json``, and Hydra's ``.hydra/`` files for the
experiment, dataset and image size; a directory without ``metrics.json`` is searched recursively) and writes into
``--out``:

- ``compare.md``: one markdown table per dataset (top-1/top-5 in %, EMA top-1, loss, parameters, training img/s),
  sorted by top-1, with the plots below it;
- ``compare.json``: the same rows, machine-readable;
- ``top1_vs_params.png`` and ``top1_vs_img_per_s.png`` (one panel per dataset, log x axis).

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

__all__ = ["Run", "find_run_dirs", "load_run", "read_benchmarks", "markdown_report", "plot_runs", "compare", "main"]

FAMILY_COLORS = {"kanvision": "tab:red", "timm": "tab:blue", "unknown": "tab:gray"}
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
    for name in ("model.safetensors", "model_ema.safetensors"):
        if (path / name).is_file():
            from safetensors import safe_open

            with safe_open(str(path / name), framework="pt") as f:
                meta = (f.metadata() or {}).get("kanvision")
            if meta:
                return json.loads(meta)
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
            return _count_params_on_meta(meta["model_name"], dict(meta["model_kwargs"]))
        if cfg is not None and model:
            kwargs = dict(OmegaConf.to_container(cfg.model.kwargs, resolve=True) if "kwargs" in cfg.model else {})
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
    meta = _safetensors_metadata(path)
    size = (meta or {}).get("data_config", {}).get("img_size") or _select(cfg, "data.img_size")
    if size is None and model:
        import timm

        pretrained = timm.get_pretrained_cfg(model.partition(".")[0])
        size = pretrained.input_size[-1] if pretrained is not None else None
    if isinstance(size, (list, tuple)) or OmegaConf.is_list(size):
        size = list(size)[-1]
    return int(size) if size else None


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
    experiment = _select(hydra_cfg, "hydra.runtime.choices.experiment")
    top5_key = metric.replace("acc1", "acc5")
    ema_key = metric.replace("/", "_ema/", 1)
    return Run(
        path=str(path),
        label=str(experiment or model or path.name),
        model=str(model),
        family=model_family(model) if model else "unknown",
        dataset=_dataset(cfg, hydra_cfg),
        img_size=_img_size(path, cfg, model),
        num_params=_num_params(path, metrics, cfg, model),
        top1=_number(metrics, metric),
        top5=_number(metrics, top5_key) if top5_key != metric else None,
        loss=_number(metrics, metric.rsplit("/", 1)[0] + "/loss"),
        ema_top1=_number(metrics, ema_key),
        test_top1=_number(metrics, "test/acc1"),
        img_per_s=_number(metrics, "train/img_per_s"),
        img_per_s_source="run" if _number(metrics, "train/img_per_s") else None,
        epochs=metrics.get("epochs"),
        world_size=metrics.get("world_size"),
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
    "run", "model", "family", "img", "params (M)", "top-1 (%)", "top-5 (%)", "EMA top-1 (%)", "loss",
    "test top-1 (%)", "train img/s", "img/s from", "epochs", "processes",
)  # fmt: skip
_TEXT_COLUMNS = {"run", "model", "family", "img/s from"}


def _row(run: Run) -> list[str]:
    return [
        run.label,
        f"`{run.model}`",
        run.family,
        _fmt(run.img_size, "d"),
        _fmt(None if run.num_params is None else run.num_params / 1e6, ".2f"),
        _pct(run.top1),
        _pct(run.top5),
        _pct(run.ema_top1),
        _fmt(run.loss, ".4f"),
        _pct(run.test_top1),
        _fmt(run.img_per_s, ",.0f"),
        run.img_per_s_source or "–",
        _fmt(run.epochs, "d"),
        _fmt(run.world_size, "d"),
    ]


def markdown_report(runs: Sequence[Run], metric: str, plots: dict[str, str], benchmarks: Sequence[str] = ()) -> str:
    """The report: a table per dataset, then the plots (file names relative to the report)."""
    lines = [
        "# kanvision-compare",
        "",
        f"{len(runs)} runs. top-1 is `{metric}` of each run's metrics.json (final epoch), as %; EMA top-1 is the "
        "same metric of the EMA weights. Parameters of the network alone. train img/s: "
        + (f"from {', '.join(f'`{b}`' for b in benchmarks)} where it has the model, else " if benchmarks else "")
        + "measured by kanvision-train during the run (all processes together, that run's hardware).",
    ]
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


def plot_runs(runs: Sequence[Run], x: str, path: str | Path, metric: str = "val/acc1") -> bool:
    """Scatter top-1 against ``x`` ("params" or "img_per_s"), one panel per dataset, kanvision and timm coloured
    apart, every point labelled. Returns False (and writes nothing) when no run has both values."""
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
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(6.0 * len(groups), 4.5), squeeze=False)
    for ax, (dataset, group) in zip(axes[0], groups.items(), strict=True):
        for family in sorted({r.family for r in group}):
            members = [r for r in group if r.family == family]
            ax.scatter(
                [x_value(r) for r in members],
                [100 * r.top1 for r in members],
                color=FAMILY_COLORS.get(family, "tab:gray"),
                label=family,
                s=40,
                zorder=3,
            )
        for r in group:
            ax.annotate(r.label, (x_value(r), 100 * r.top1), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.margins(x=0.3, y=0.12)  # room for the labels
        ax.set_xlabel("parameters (M)" if x == "params" else "training images / s")
        ax.set_ylabel(f"top-1 (%), {metric}")
        ax.set_title(dataset)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def compare(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    metric: str = "val/acc1",
    benchmarks: Sequence[str | Path] = (),
    benchmark_filters: Sequence[str] = (),
) -> list[Run]:
    """Read the runs under ``paths``, write ``compare.md``, ``compare.json`` and the two plots into ``out_dir``."""
    if "acc1" not in metric:
        raise ValueError(f"--metric must be a top-1 accuracy key such as val/acc1 or test/acc1, got {metric!r}")
    runs = [load_run(p, metric) for p in find_run_dirs(paths)]
    speeds = read_benchmarks(benchmarks, benchmark_filters) if benchmarks else {}
    for run in runs:
        if run.model in speeds:
            run.img_per_s, run.img_per_s_source = speeds[run.model], "benchmark"
    labels = [r.label for r in runs]
    for run in runs:
        if labels.count(run.label) > 1:
            run.label = f"{run.label} ({Path(run.path).name})"
    if all(r.top1 is None for r in runs):
        raise ValueError(f"no run has {metric!r} in its metrics.json; choose another --metric")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {what: file if plot_runs(runs, what, out_dir / file, metric) else "" for what, file in PLOTS.items()}
    (out_dir / "compare.md").write_text(markdown_report(runs, metric, plots, [str(b) for b in benchmarks]) + "\n")
    (out_dir / "compare.json").write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    return runs


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        runs = compare(args.runs, args.out, args.metric, args.benchmark, args.benchmark_filter)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"{len(runs)} runs -> {Path(args.out) / 'compare.md'}")


if __name__ == "__main__":
    main()
