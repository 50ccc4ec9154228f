"""What the micro-benchmarks share: their options, the header of their JSON and tables, and where results go."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = [
    "RESULTS_DIR",
    "benchmark_parser",
    "check_benchmark_args",
    "print_table_header",
    "result_header",
    "run_benchmark",
    "write_result",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options the micro-benchmarks share: ``--device``, ``--warmup`` and ``--out``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    return parser


def check_benchmark_args(parser: argparse.ArgumentParser, args: argparse.Namespace, steps: str) -> None:
    """Refuse ``--<steps>`` < 1, ``--warmup`` < 0 and a CUDA device on a machine without one."""
    count = getattr(args, steps)
    if count < 1 or args.warmup < 0:
        parser.error(f"--{steps} must be >= 1 and --warmup >= 0, got --{steps} {count} --warmup {args.warmup}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device!r} requested but CUDA is not available; use --device cpu")


def run_benchmark(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    steps: str,
    run: Callable[..., dict],
    print_table: Callable[[dict], None],
) -> dict:
    """Parse and check ``argv``, call ``run`` with every option but ``--out`` by name, print the table, write the JSON.

    The JSON goes to ``--out`` or ``benchmarks/results/<name>-<device type>-<date>.json``, ``name`` the last part of
    the result's ``benchmark`` (the module that made it).
    """
    args = parser.parse_args(argv)
    check_benchmark_args(parser, args, steps)
    options = {k: v for k, v in vars(args).items() if k != "out"}
    result = run(**options)
    print_table(result)
    name = result["benchmark"].rpartition(".")[2]
    write_result(result, args.out, f"{name}-{torch.device(args.device).type}-{result['date']}.json")
    return result


def result_header(benchmark: str, device: torch.device) -> dict:
    """The entries every micro-benchmark's JSON starts with: its module, the date, the machine and torch's version."""
    return {
        "benchmark": benchmark,
        "date": dt.date.today().isoformat(),
        "machine": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "torch": torch.__version__,
    }


def print_table_header(result: dict, settings: str, columns: str) -> None:
    """The lines a benchmark's table starts with: what ran where, the ``settings`` line(s), ``columns`` underlined."""
    print(f"{result['benchmark']}  {result['date']}  {result['machine']['device']}  torch {result['torch']}")
    print(settings)
    print(columns)
    print("-" * len(columns))


def write_result(result: dict, out: Path | None, default_name: str) -> Path:
    """Write a benchmark's JSON to ``out`` or ``benchmarks/results/<default_name>`` and say where."""
    out = out or RESULTS_DIR / default_name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return out
