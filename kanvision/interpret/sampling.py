"""The learned univariate functions of KAN modules: what their inputs look like on data, and their values on a grid.

A KAN layer is y_o = bias_o + sum_i phi_{o,i}(x_i) with phi_{o,i}(x) = w_{o,i,0} b(x) + sum_d w_{o,i,d+1} B_d(x)
(Liu et al., "KAN: Kolmogorov-Arnold Networks", arXiv 2404.19756); a KAN convolution has one phi per (output channel,
input channel, kernel position). Every supported module is sampled in one layout,

    (out, in, *kernel, num_points),

with ``in`` the inputs each output reads (``in_channels / groups`` for grouped convolutions; :func:`input_index`
maps them to the module's input channels). Modules whose functions are shared are laid out as:

- Group activations (:class:`~kanvision.layers.GroupActivation`: KAT's :class:`~kanvision.layers.GroupRational`,
  arXiv 2409.10594, and :class:`~kanvision.layers.GroupKAN` of any basis): ``(1, groups, P)``, one function per
  channel group, evaluated by ``group_functions``; the recorded input pools the channels of each group.
- Channel-shared convolutions (:class:`~kanvision.layers.SharedKANConv2d`: RKAN's kernel, Bodner et al.'s) hold a
  1 -> ``kernels`` :class:`~kanvision.layers.KANConv2d` over the channels folded into the batch and are sampled
  through it: ``(kernels, 1, k, k, P)``, its recorded input pools all channels.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kanvision.layers.group_activation import GroupActivation
from kanvision.layers.kan_layer import KANLayer

__all__ = [
    "FUNCTION_MODULES",
    "FunctionSamples",
    "InputRecord",
    "collect_inputs",
    "evaluate_functions",
    "find_function_modules",
    "function_shape",
    "has_functions",
    "input_index",
    "num_inputs",
    "record_inputs",
    "sample_functions",
]

FUNCTION_MODULES = (KANLayer, GroupActivation)

DEFAULT_QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)


def has_functions(module: nn.Module) -> bool:
    """Whether ``module`` holds learned univariate functions that this package samples."""
    return isinstance(module, FUNCTION_MODULES)


def find_function_modules(model: nn.Module, pattern: str | None = None) -> dict[str, nn.Module]:
    """Every module of ``model`` with learned functions, by qualified name (``"model"`` for ``model`` itself).

    ``pattern``: comma-separated ``fnmatch`` patterns on the names (``"features.*"``, ``"blocks.0.*,head"``).
    """
    patterns = [p.strip() for p in pattern.split(",") if p.strip()] if pattern else []
    found = {}
    for name, module in model.named_modules():
        name = name or "model"
        if has_functions(module) and (not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)):
            found[name] = module
    return found


def _check_module(module: nn.Module) -> None:
    if not has_functions(module):
        valid = ", ".join(cls.__name__ for cls in FUNCTION_MODULES)
        raise TypeError(f"{type(module).__name__} holds no learned univariate functions; expected one of: {valid}")


def _kernel_size(module: nn.Module) -> tuple[int, ...]:
    if isinstance(module, KANLayer):
        return tuple(module.weight.shape[2:])
    return ()


def function_shape(module: nn.Module) -> tuple[int, ...]:
    """``(out, in, *kernel)``: the layout of the module's functions (see the module docstring)."""
    _check_module(module)
    if isinstance(module, KANLayer):
        return (module._out, module._in // module.groups, *_kernel_size(module))
    return (1, module.groups)


def num_inputs(module: nn.Module) -> int:
    """How many separately recorded inputs the module's functions read (channels, or pooled channel groups)."""
    _check_module(module)
    return module._in if isinstance(module, KANLayer) else module.groups


def input_index(module: nn.Module) -> Tensor:
    """(out, in) indices of the recorded input each function reads: grouped KAN layers read their group's channels."""
    out, per_group = function_shape(module)[:2]
    groups = module.groups if isinstance(module, KANLayer) else 1
    group_of_output = torch.arange(out) // (out // groups)
    return group_of_output[:, None] * per_group + torch.arange(per_group)


def input_columns(module: nn.Module, x: Tensor) -> Tensor:
    """The module's input ``x`` as (num_inputs, N): one row of observed values per recorded input."""
    _check_module(module)
    if isinstance(module, KANLayer):
        if module._channel_dim == -1:
            return module._prepare(x).reshape(-1, module._in).T
        return module._batched(x).movedim(1, 0).reshape(module._in, -1)
    channels_last = x.movedim(module.channel_dim, -1)
    per_group = module.num_channels // module.groups
    return channels_last.reshape(-1, module.groups, per_group).permute(1, 0, 2).reshape(module.groups, -1)


@torch.no_grad()
def evaluate_functions(module: nn.Module, x: Tensor) -> Tensor:
    """phi at the points ``x``: (P,) for every function alike, or (num_inputs, P) per recorded input.

    Returns (out, in, *kernel, P) in ``x``'s dtype (the parameters are cast to it); the bias is not included.
    """
    _check_module(module)
    if not x.is_floating_point():
        raise TypeError(f"evaluate_functions needs floating-point points, got {x.dtype}")
    inputs = num_inputs(module)
    if x.dim() == 1:
        x = x.expand(inputs, -1)
    if x.dim() != 2 or x.shape[0] != inputs:
        raise ValueError(f"points must be (P,) or ({inputs}, P) for this {type(module).__name__}, got {tuple(x.shape)}")
    dtype = x.dtype
    if isinstance(module, KANLayer):
        g, m = module.groups, module.num_terms
        out, per_group, *kernel = function_shape(module)
        feats = module.basis(x, -1, module.base_activation).to(dtype)  # (in, P, m): b(x), B_0(x), ..
        weight = module.weight.detach().to(dtype).reshape(g, out // g, per_group, m, -1)
        y = torch.einsum("gipm,goimk->goikp", feats.reshape(g, per_group, -1, m), weight)
        return y.reshape(out, per_group, *kernel, x.shape[1])
    return module.group_functions(x.T.contiguous()).T.unsqueeze(0)


# -- recording inputs --------------------------------------------------------------------------------------------


@dataclass
class InputRecord:
    """The values a module's inputs took on data, per recorded input (channel, or pooled group).

    ``samples`` is a uniform random subsample (bottom-k of random keys, so it does not depend on how the data was
    batched); its columns are joint draws (one position of the input seen by all channels). ``examples`` holds the
    first items of the raw input (rows of a linear layer's input, images of a convolution's) to check outputs on.
    """

    minimum: Tensor  # (num_inputs,)
    maximum: Tensor  # (num_inputs,)
    samples: Tensor  # (num_inputs, S)
    examples: Tensor
    count: int  # values seen per input

    def range(self) -> Tensor:
        """(num_inputs, 2): observed [min, max] of every input."""
        return torch.stack([self.minimum, self.maximum], 1)

    def quantiles(self, q: Sequence[float] = DEFAULT_QUANTILES) -> Tensor:
        """(num_inputs, len(q)) quantiles of every input, from ``samples``."""
        q = torch.as_tensor(list(q), dtype=self.samples.dtype)
        if q.numel() == 0 or bool(((q < 0) | (q > 1)).any()):
            raise ValueError(f"quantiles must be a non-empty list of numbers in [0, 1], got {q.tolist()}")
        return torch.quantile(self.samples, q, dim=1).T


class _Recorder:
    def __init__(
        self,
        name: str,
        module: nn.Module,
        records: dict[str, InputRecord],
        max_samples: int,
        max_examples: int,
        generator: torch.Generator,
    ):
        self.name = name
        self.module = module
        self.records = records
        self.max_samples = max_samples
        self.max_examples = max_examples
        self.generator = generator
        self.record: InputRecord | None = None
        self.keys = torch.empty(0)

    @torch.no_grad()
    def __call__(self, module: nn.Module, args: tuple) -> None:
        x = args[0].detach()
        columns = input_columns(module, x).cpu()  # (num_inputs, N)
        columns = columns.to(torch.promote_types(columns.dtype, torch.float32))  # half precision: float32
        if columns.shape[1] == 0:
            return
        keys = torch.rand(columns.shape[1], generator=self.generator)
        examples = self._examples(x)
        if self.record is None:
            self.record = InputRecord(
                columns.amin(1), columns.amax(1), columns[:, :0], examples[: self.max_examples], 0
            )
        else:
            rec = self.record
            rec.minimum = torch.minimum(rec.minimum, columns.amin(1))
            rec.maximum = torch.maximum(rec.maximum, columns.amax(1))
            if len(rec.examples) < self.max_examples and examples.shape[1:] == rec.examples.shape[1:]:
                rec.examples = torch.cat([rec.examples, examples[: self.max_examples - len(rec.examples)]])
        rec = self.record
        rec.count += columns.shape[1]
        keys, samples = torch.cat([self.keys, keys]), torch.cat([rec.samples, columns], 1)
        if keys.numel() > self.max_samples:  # the smallest keys: a uniform sample of everything seen so far
            keep = keys.topk(self.max_samples, largest=False).indices.sort().values
            keys, samples = keys[keep], samples[:, keep]
        self.keys, rec.samples = keys, samples
        self.records[self.name] = rec

    def _examples(self, x: Tensor) -> Tensor:
        module = self.module
        if isinstance(module, KANLayer) and module._channel_dim == -1:
            return x.reshape(-1, module._in)[: self.max_examples].cpu()
        if isinstance(module, KANLayer):
            x = module._batched(x)
        return x[: self.max_examples].cpu()


@contextmanager
def record_inputs(
    model: nn.Module,
    pattern: str | None = None,
    max_samples: int = 4096,
    max_examples: int = 64,
    seed: int = 0,
) -> Iterator[dict[str, InputRecord]]:
    """Record the inputs of every function module of ``model`` (matching ``pattern``) while the block runs.

    Yields a dict that fills with one :class:`InputRecord` per module the forward passes reach::

        with record_inputs(model) as records:
            for images in batches:
                model(images)
    """
    for name, value, low in (("max_samples", max_samples, 1), ("max_examples", max_examples, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    generator = torch.Generator().manual_seed(seed)
    records: dict[str, InputRecord] = {}
    handles = [
        module.register_forward_pre_hook(_Recorder(name, module, records, max_samples, max_examples, generator))
        for name, module in find_function_modules(model, pattern).items()
    ]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def collect_inputs(model: nn.Module, batches: Iterable[Tensor], pattern: str | None = None, **kwargs) -> dict:
    """:func:`record_inputs` over forward passes of ``model`` (in eval mode) on ``batches``; the records by name."""
    was_training = model.training
    model.eval()
    try:
        with record_inputs(model, pattern, **kwargs) as records:
            for batch in batches:
                model(batch)
    finally:
        model.train(was_training)
    return records


# -- sampling on a grid ------------------------------------------------------------------------------------------


@dataclass
class FunctionSamples:
    """Values of a module's functions: ``y[o, i, *k, p]`` = phi_{o,i,k}(``x[o, i, p]``)."""

    x: Tensor  # (out, in, P)
    y: Tensor  # (out, in, *kernel, P)


def check_range(x_range: Sequence[float]) -> tuple[float, float]:
    """``x_range`` as two floats (low, high), or a ValueError naming it."""
    ok = isinstance(x_range, Sequence) and len(x_range) == 2
    lo, hi = (float(v) for v in x_range) if ok else (math.nan, math.nan)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"x_range must be two finite numbers (low, high) with low < high, got {x_range!r}")
    return lo, hi


def input_grid(record: InputRecord, num_points: int, margin: float = 0.1, dtype=torch.float64) -> Tensor:
    """(num_inputs, P) grids over each input's observed [min, max], widened by ``margin`` of the span on each side.

    A constant input gets a grid of width 2 around its value.
    """
    lo, hi = record.minimum.to(dtype), record.maximum.to(dtype)
    span = hi - lo
    pad = torch.where(span > 0, margin * span, torch.ones_like(span))
    steps = torch.linspace(0, 1, num_points, dtype=dtype)
    return (lo - pad)[:, None] + (span + 2 * pad)[:, None] * steps


def sample_functions(
    module: nn.Module,
    record: InputRecord | None = None,
    x_range: Sequence[float] | None = None,
    num_points: int = 101,
    margin: float = 0.1,
    dtype: torch.dtype = torch.float64,
) -> FunctionSamples:
    """Every function of ``module`` on ``num_points`` points: over ``x_range`` (the same grid for all), or over each
    input's range in ``record`` widened by ``margin`` of its span on each side."""
    _check_module(module)
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    if (record is None) == (x_range is None):
        raise ValueError("sample_functions needs exactly one of x_range (a fixed grid) or record (the data's range)")
    if record is not None:
        if record.minimum.numel() != num_inputs(module):
            raise ValueError(
                f"the record has {record.minimum.numel()} inputs, this {type(module).__name__} reads "
                f"{num_inputs(module)}"
            )
        points = input_grid(record, num_points, margin, dtype)
    else:
        lo, hi = check_range(x_range)
        points = torch.linspace(lo, hi, num_points, dtype=dtype).expand(num_inputs(module), -1)
    return FunctionSamples(points[input_index(module)], evaluate_functions(module, points))
