"""The README's zoo table, generated from the newest ``kanvision-bench`` CSV in ``benchmarks/results``.

kanvision-bench --out benchmarks/results    # measure (on the machine the table should describe)
python -m benchmarks.readme_table           # rewrite the table between the README's zoo-table markers
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import RESULTS_DIR
from kanvision.bench.benchmark import read_csv

__all__ = ["README", "TABLE_START", "TABLE_END", "latest_csv", "readme_table", "update_readme", "main"]

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE_START, TABLE_END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def latest_csv(results_dir: Path = RESULTS_DIR) -> Path:
    """The newest eager ``zoo-<device>-<date>.csv`` (by the date in its name, then device)."""
    eager = [p for p in results_dir.glob("zoo-*.csv") if re.fullmatch(r"zoo-\w+-\d{4}-\d{2}-\d{2}", p.stem)]
    found = sorted(eager, key=lambda p: (p.stem.split("-", 2)[-1], p.stem))
    if not found:
        raise FileNotFoundError(f"no zoo-<device>-<date>.csv in {results_dir}; run kanvision-bench first")
    return found[-1]


def readme_table(csv_path: Path) -> str:
    """The README's zoo table (markdown) generated from one benchmark CSV."""
    rows = read_csv(csv_path)

    def x(value: str) -> str:
        return f"{float(value):.2f}x" if value else "–"

    meta_path = csv_path.with_suffix(".json")
    runs = json.loads(meta_path.read_text()).get("runs", []) if meta_path.exists() else []
    machines = list(dict.fromkeys(run["machine"]["device"] for run in runs if "machine" in run))
    where = f" on {' and '.join(machines)} (the JSON lists which models each run measured)" if machines else ""
    lines = [
        f"Measured by `kanvision-bench` (`{csv_path.name}`){where}: batch {rows[0]['batch_size']}, each model "
        "against its baseline in the same run; ratios are model / baseline (images/s and peak memory).",
        "",
        "| model | params (M) | GFLOPs | input | baseline | infer img/s | x baseline | train img/s | x baseline "
        "| peak mem (MiB) | x baseline |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {int(r['params']) / 1e6:.2f} | {float(r['gflops']):.2f} | {r['input_size']} | "
            f"{r['baseline'] or '–'} | {float(r['infer_img_s']):.1f} | {x(r['infer_x_baseline'])} | "
            f"{float(r['train_img_s']):.1f} | {x(r['train_x_baseline'])} | {float(r['peak_mem_mib']):.0f} | "
            f"{x(r['mem_x_baseline'])} |"
        )
    return "\n".join(lines)


def update_readme(csv_path: Path, readme: Path = README) -> None:
    """Replace the text between the zoo-table markers of ``readme`` by :func:`readme_table` of ``csv_path``."""
    text = readme.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise ValueError(f"{readme} has no {TABLE_START} ... {TABLE_END} markers")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    readme.write_text(f"{head}{TABLE_START}\n{readme_table(csv_path)}\n{TABLE_END}{tail}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_table", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of zoo-<device>-<date>.csv files")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    path = latest_csv(args.results)
    update_readme(path, args.readme)
    print(f"{args.readme} zoo table rewritten from {path}")


if __name__ == "__main__":
    main()
