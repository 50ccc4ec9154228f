"""How much each learned function contributes: pykan's attribution score on recorded data.

pykan (Liu et al., "KAN: Kolmogorov-Arnold Networks", arXiv 2404.19756, section 2.5.1) scores an edge by the
magnitude of its activations on the training inputs and a node by the largest score of its edges. Here an edge's
score is mean |phi(x)| over the recorded input samples (actual values, not a grid); for convolutions one score per
(output channel, input channel, kernel position), every kernel position taken over the same recorded pixel values of
its input channel (the positions differ only at the border). A function that is zero scores exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kanvision.interpret.sampling import (
    InputRecord,
    evaluate_functions,
    find_function_modules,
    function_shape,
    input_index,
    num_inputs,
)

__all__ = ["LayerImportance", "function_importance", "model_importance"]


@dataclass
class LayerImportance:
    """Scores of one module's functions; ``per_input``/``per_output`` are the largest score of their functions."""

    edges: Tensor  # (out, in, *kernel): mean |phi| over the recorded inputs
    per_input: Tensor  # (num_inputs,)
    per_output: Tensor  # (out,)

    def per_edge(self) -> Tensor:
        """(out, in): the sum over kernel positions (an input channel's whole contribution to an output channel)."""
        return self.edges.flatten(2).sum(2) if self.edges.dim() > 2 else self.edges

    def top(self, k: int | None = None) -> list[tuple[int, ...]]:
        """Indices ``(out, in, *kernel)`` of the ``k`` highest-scoring functions (all of them for None), best first."""
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise ValueError(f"k must be an integer >= 0 or None, got {k!r}")
        flat = self.edges.flatten()
        order = flat.argsort(descending=True, stable=True)[: flat.numel() if k is None else k]
        return [tuple(int(v) for v in torch.unravel_index(i, self.edges.shape)) for i in order]


@torch.no_grad()
def function_importance(
    module: nn.Module, record: InputRecord, chunk_size: int = 256, dtype: torch.dtype = torch.float64
) -> LayerImportance:
    """pykan's score of every function of ``module`` on the samples of ``record`` (see the module docstring)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    samples = record.samples.to(dtype)
    if samples.shape[0] != num_inputs(module):
        raise ValueError(
            f"the record has {samples.shape[0]} inputs, this {type(module).__name__} reads {num_inputs(module)}"
        )
    if samples.shape[1] == 0:
        raise ValueError("the record holds no samples; run the model on data inside record_inputs first")
    total = torch.zeros(function_shape(module), dtype=dtype)
    for chunk in samples.split(chunk_size, dim=1):  # (num_inputs, S'): bounds the (out, in, *kernel, S') values
        total += evaluate_functions(module, chunk).abs().sum(-1)
    edges = total / samples.shape[1]
    # each (out, in) function reads one recorded input: the input's score is the largest over what reads it
    per_function = edges.flatten(2).amax(2) if edges.dim() > 2 else edges  # (out, in)
    per_input = torch.zeros(samples.shape[0], dtype=dtype)
    per_input.scatter_reduce_(0, input_index(module).flatten(), per_function.flatten(), "amax")
    return LayerImportance(edges, per_input, per_function.amax(1))


def model_importance(
    model: nn.Module, records: dict[str, InputRecord], pattern: str | None = None, **kwargs
) -> dict[str, LayerImportance]:
    """:func:`function_importance` of every recorded function module of ``model`` (matching ``pattern``), by name."""
    modules = find_function_modules(model, pattern)
    return {
        name: function_importance(modules[name], record, **kwargs)
        for name, record in records.items()
        if name in modules
    }
