"""kanvision's own measurements (not installed with the package), run from the repository root.

    python -m benchmarks.layers            # KANConv2d and KANLinear per basis against nn.Conv2d / nn.Linear
    python -m benchmarks.activations       # GroupRational (and --group-kan: GroupKAN) against GELU
    python -m benchmarks.models            # KAN CNN training throughput against plain CNNs
    python -m benchmarks.readme_table      # the README's zoo table from the newest zoo CSV
    bash scripts/gpu_check.sh              # the one-GPU check (benchmarks/gpu_check.py)

Results go to ``benchmarks/results/``, one current file per benchmark and device.
"""
