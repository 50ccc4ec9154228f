"""Pruning unimportant inputs and outputs of KAN layers (pykan's node pruning, Liu et al., arXiv 2404.19756,
section 2.5.1): a smaller layer of the same class with the kept functions' weights copied.

Removing inputs changes what the layer reads: the caller must drop the same input features (``x[..., kept_inputs]``
for a KANLinear, ``x[:, kept_inputs]`` for a convolution), e.g. by pruning the previous layer's outputs alike, as
:func:`prune_sequential` does for a stack of KANLinear layers. Removing outputs changes the output shape; the report
says which outputs are left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kanvision.interpret.importance import LayerImportance, function_importance
from kanvision.interpret.sampling import InputRecord, find_function_modules
from kanvision.layers.kan_conv import _KANConvNd
from kanvision.layers.kan_linear import KANLinear

__all__ = ["PruneReport", "prune_layer", "prune_sequential"]


@dataclass
class PruneReport:
    """What :func:`prune_layer` kept and removed, and how far the kept outputs moved on the recorded examples (with
    the removed input features dropped); NaN where the record holds no examples."""

    kept_inputs: list[int]
    removed_inputs: list[int]
    kept_outputs: list[int]
    removed_outputs: list[int]
    max_abs_difference: float


def _check_layer(layer: nn.Module) -> None:
    if not isinstance(layer, (KANLinear, _KANConvNd)):
        raise TypeError(f"prune_layer supports KANLinear and KANConv1d/2d/3d, got {type(layer).__name__}")
    if layer.groups != 1:
        raise ValueError(
            f"prune_layer supports groups=1 only (removing a channel of a grouped convolution would unbalance its "
            f"groups), got groups={layer.groups}"
        )


def _split(scores: Tensor, threshold: float, what: str) -> tuple[list[int], list[int]]:
    keep = scores >= threshold
    if not bool(keep.any()):
        raise ValueError(
            f"threshold={threshold:g} would remove every {what} (largest importance {scores.max().item():.4g}); "
            "use a smaller threshold"
        )
    return torch.nonzero(keep).flatten().tolist(), torch.nonzero(~keep).flatten().tolist()


def _smaller_layer(layer: KANLinear | _KANConvNd, kept_inputs: list[int], kept_outputs: list[int]) -> nn.Module:
    weight = layer.weight.detach()  # the effective weight, also under a parametrisation (e.g. a spline scaler)
    common = dict(
        basis=layer.basis,  # copied by the new layer
        base_activation=layer.base_activation,
        bias=layer.bias is not None,
        drop_rate=layer.drop_rate,
        recompute_basis=layer.recompute_basis,
        device=weight.device,
        dtype=weight.dtype,
    )
    if isinstance(layer, KANLinear):
        new = KANLinear(len(kept_inputs), len(kept_outputs), **common)
    else:
        new = type(layer)(
            len(kept_inputs), len(kept_outputs), layer.kernel_size, layer.stride, layer.padding, layer.dilation,
            padding_mode=layer.padding_mode, border=layer.border, **common,
        )  # fmt: skip
    m, kernel = layer.num_terms, weight.shape[2:]
    rows = weight.reshape(layer._out, layer._in, m, *kernel)[kept_outputs][:, kept_inputs]
    with torch.no_grad():
        new.weight.copy_(rows.reshape(len(kept_outputs), len(kept_inputs) * m, *kernel))
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach()[kept_outputs])
    new.train(layer.training)
    return new


@torch.no_grad()
def _difference(old: nn.Module, new: nn.Module, examples: Tensor, kept_inputs: list[int], kept_outputs: list[int]):
    if examples.numel() == 0:
        return math.nan
    dim = -1 if isinstance(old, KANLinear) else 1
    examples = examples.to(old.weight.device, old.weight.dtype)
    reference = old(examples).index_select(dim, torch.tensor(kept_outputs, device=examples.device))
    pruned = new(examples.index_select(dim, torch.tensor(kept_inputs, device=examples.device)))
    return (reference - pruned).abs().max().item()


def prune_layer(
    layer: KANLinear | _KANConvNd,
    record: InputRecord,
    threshold: float,
    inputs: bool = True,
    outputs: bool = True,
    importance: LayerImportance | None = None,
) -> tuple[nn.Module, PruneReport]:
    """A copy of ``layer`` without the inputs and/or outputs whose importance is below ``threshold``.

    Importance is :func:`~kanvision.interpret.importance.function_importance` on ``record`` (or ``importance``): an
    input's (output's) score is the largest mean |phi| of the functions reading it (writing to it). Inputs whose
    functions are all zero are removed without changing the outputs. KANLinear and KANConv1d/2d/3d with groups=1.
    """
    _check_layer(layer)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
    importance = importance if importance is not None else function_importance(layer, record)
    all_in, all_out = list(range(layer._in)), list(range(layer._out))
    kept_in, removed_in = _split(importance.per_input, threshold, "input") if inputs else (all_in, [])
    kept_out, removed_out = _split(importance.per_output, threshold, "output") if outputs else (all_out, [])
    new = _smaller_layer(layer, kept_in, kept_out)
    difference = _difference(layer, new, record.examples, kept_in, kept_out)
    return new, PruneReport(kept_in, removed_in, kept_out, removed_out, difference)


def prune_sequential(
    model: nn.Sequential, records: Mapping[str, InputRecord], threshold: float
) -> tuple[nn.Sequential, dict[str, PruneReport]]:
    """Prune the hidden nodes of a stack of KANLinear layers consistently, keeping the network's inputs and outputs.

    A hidden node stays when its incoming functions (outputs of the layer before) and its outgoing functions (inputs
    of the layer after) both reach ``threshold`` (pykan's rule). ``records`` come from :func:`record_inputs` on the
    stack; each layer's report compares it with its pruned copy on that layer's recorded examples.
    """
    if not isinstance(model, nn.Sequential) or not all(isinstance(layer, KANLinear) for layer in model):
        raise TypeError("prune_sequential needs an nn.Sequential of KANLinear layers only")
    names = list(find_function_modules(model))
    missing = [name for name in names if name not in records]
    if missing:
        raise ValueError(f"no record for layers {missing}; run the stack on data inside record_inputs first")
    scores = {name: function_importance(model[int(name)], records[name]) for name in names}
    kept = [list(range(model[0].in_features))]  # inputs of layer 0, outputs of layer 0 = inputs of layer 1, ...
    for before, after in zip(names, names[1:], strict=False):
        node = torch.minimum(scores[before].per_output, scores[after].per_input)
        kept.append(_split(node, threshold, f"hidden node after layer {before}")[0])
    kept.append(list(range(model[-1].out_features)))
    layers, reports = [], {}
    for index, name in enumerate(names):
        old, kept_in, kept_out = model[index], kept[index], kept[index + 1]
        new = _smaller_layer(old, kept_in, kept_out)
        removed_in = sorted(set(range(old.in_features)) - set(kept_in))
        removed_out = sorted(set(range(old.out_features)) - set(kept_out))
        difference = _difference(old, new, records[name].examples, kept_in, kept_out)
        reports[name] = PruneReport(kept_in, removed_in, kept_out, removed_out, difference)
        layers.append(new)
    return nn.Sequential(*layers), reports
