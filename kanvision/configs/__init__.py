"""Hydra configs of kanvision-train / kanvision-eval (a package so that Hydra finds them after pip install)."""
