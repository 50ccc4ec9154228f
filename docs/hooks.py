"""MkDocs hook: benchmark tables rendered at build time from the files in benchmarks/results/.

A page asks for a table with a marker on a line of its own, ``<!-- results:KIND [ARGS] -->``:

- ``zoo``: the newest eager ``zoo-<device>-<date>.csv`` (``kanvision-bench``), every model against its baseline;
  ``zoo PREFIX...`` keeps the models whose names start with one of the prefixes (the model cards' tables);
- ``layers``: the newest ``layers-<device>-<date>.json`` (KANConv2d per basis against its convolutions);
- ``activations``: the newest ``activations-<device>-<date>.json`` (GroupRational against GELU);
- ``gpu``: the newest ``gpu-<date>.json`` (the one-GPU check).

A missing or unreadable file gives "not measured" instead of a table: the site builds from a fresh clone.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

MARKER = re.compile(r"^<!-- results:(\w+)((?: [\w.*-]+)*) -->$", re.MULTILINE)
KINDS = ("zoo", "layers", "activations", "gpu")
DATED = re.compile(r"^(?P<kind>[a-z]+)(?:-(?P<device>\w+))?-(?P<date>\d{4}-\d{2}-\d{2})\.(?P<ext>csv|json)$")


def newest(results_dir: Path, kind: str, ext: str) -> Path | None:
    """The newest ``<kind>-<device>-<date>.<ext>`` (or ``<kind>-<date>.<ext>``) by date, then name; variants with a
    suffix after the date (``-compiled``, one-off comparisons) are not the main series and are skipped."""
    found = []
    for path in results_dir.glob(f"{kind}-*.{ext}") if results_dir.is_dir() else ():
        match = DATED.match(path.name)
        if match and match["kind"] == kind:
            found.append((match["date"], path.name, path))
    return max(found)[2] if found else None


def _not_measured(what: str, results_dir: Path, reason: str = "") -> str:
    why = f" ({reason})" if reason else ""
    return f"*Not measured: no {what} in `{results_dir.name}/`{why}.*"


def _ratio(value: str | float | None) -> str:
    return f"{float(value):.2f}x" if value not in (None, "") else "–"


def _machines(meta_path: Path) -> str:
    if not meta_path.exists():
        return ""
    meta = json.loads(meta_path.read_text())
    runs = meta.get("runs") or [meta]
    devices = list(dict.fromkeys(run["machine"]["device"] for run in runs if "machine" in run))
    return f" on {' and '.join(devices)}" if devices else ""


def zoo_table(results_dir: Path, prefixes: list[str]) -> str:
    path = newest(results_dir, "zoo", "csv")
    if path is None:
        return _not_measured("`zoo-<device>-<date>.csv`", results_dir, "run kanvision-bench")
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if not prefixes or r["model"].startswith(tuple(prefixes))]
    if not rows:
        return _not_measured(f"row for {', '.join(prefixes)} in {path.name}", results_dir)
    lines = [
        f"`{path.name}`{_machines(path.with_suffix('.json'))}, batch {rows[0]['batch_size']}, each model against its "
        "baseline in the same run (ratios: model / baseline).",
        "",
        "| model | params (M) | GFLOPs | input | baseline | infer img/s | x baseline | train img/s | x baseline "
        "| peak mem (MiB) | x baseline |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {int(r['params']) / 1e6:.2f} | {float(r['gflops']):.2f} | {r['input_size']} | "
            f"{r['baseline'] or '–'} | {float(r['infer_img_s']):.1f} | {_ratio(r['infer_x_baseline'])} | "
            f"{float(r['train_img_s']):.1f} | {_ratio(r['train_x_baseline'])} | {float(r['peak_mem_mib']):.0f} | "
            f"{_ratio(r['mem_x_baseline'])} |"
        )
    return "\n".join(lines)


def _header(path: Path, meta: dict) -> str:
    machine = meta.get("machine", {})
    threads = f", {machine['cpu_threads']} threads" if "cpu_threads" in machine else ""
    timing = f" {meta['timing']}." if meta.get("timing") else ""
    device = machine.get("device", "unknown device")
    return f"`{path.name}` ({device}{threads}, torch {meta.get('torch', '?')}).{timing}"


def layers_table(results_dir: Path) -> str:
    path = newest(results_dir, "layers", "json")
    if path is None:
        return _not_measured("`layers-<device>-<date>.json`", results_dir, "run the layer benchmark")
    meta = json.loads(path.read_text())
    shape = "x".join(map(str, meta.get("shape", [])))
    lines = [
        f"{_header(path, meta)} Input {shape}, forward + backward.",
        "",
        "| layer | m | ms | x Conv2d(C -> C) | x Conv2d(C*m -> C) | saved for backward (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in meta["rows"]:
        lines.append(
            f"| {r['layer']} | {r.get('m', 1)} | {r['ms']:.1f} | {_ratio(r.get('x_conv'))} | "
            f"{_ratio(r.get('x_wide_conv'))} | {r.get('saved_MiB', float('nan')):.1f} |"
        )
    return "\n".join(lines)


def activations_table(results_dir: Path) -> str:
    path = newest(results_dir, "activations", "json")
    if path is None:
        return _not_measured("`activations-<device>-<date>.json`", results_dir, "run the activation benchmark")
    meta = json.loads(path.read_text())
    shape = "x".join(map(str, meta.get("shape", [])))
    lines = [
        f"{_header(path, meta)} Input {shape}, {meta.get('groups', '?')} groups, forward + backward.",
        "",
        "| activation | ms (median) | x GELU |",
        "|---|---:|---:|",
    ]
    for r in meta["rows"]:
        lines.append(f"| {r['activation']} | {r['ms']:.2f} | {_ratio(r.get('x_gelu'))} |")
    return "\n".join(lines)


def gpu_summary(results_dir: Path) -> str:
    path = newest(results_dir, "gpu", "json")
    if path is None:
        return _not_measured("`gpu-<date>.json`", results_dir, "run the one-GPU check")
    meta = json.loads(path.read_text())
    device = meta.get("device") or meta.get("machine", {}).get("device", "unknown device")
    versions = ", ".join(f"{k} {meta[k]}" for k in ("torch", "triton", "timm") if k in meta)
    lines = [f"`{path.name}`: {device}, {meta.get('date', '?')}" + (f" ({versions})" if versions else "") + "."]
    goals = meta.get("goals") or meta.get("goal_flags") or {}
    if isinstance(goals, dict) and goals:
        lines += ["", "| goal | met |", "|---|---|"]
        lines += [f"| {name} | {'yes' if met else 'no'} |" for name, met in goals.items()]
    return "\n".join(lines)


def render(kind: str, args: list[str], results_dir: Path) -> str:
    """The markdown that replaces one marker; "not measured" for a missing or unreadable results file."""
    if kind not in KINDS:
        raise ValueError(f"unknown results table {kind!r}; valid: {', '.join(KINDS)}")
    if args and kind != "zoo":
        raise ValueError(f"results table {kind!r} takes no arguments, got {args}")
    build = {"layers": layers_table, "activations": activations_table, "gpu": gpu_summary}
    try:
        return zoo_table(results_dir, args) if kind == "zoo" else build[kind](results_dir)
    except (OSError, ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        return _not_measured(f"readable {kind} results", results_dir, f"{type(error).__name__}: {error}")


def render_markdown(markdown: str, results_dir: Path) -> str:
    return MARKER.sub(lambda m: render(m[1], m[2].split(), results_dir), markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return render_markdown(markdown, Path(config["config_file_path"]).parent / "benchmarks" / "results")
