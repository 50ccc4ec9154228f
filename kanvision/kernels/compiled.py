"""Elementwise formulas run as CPU kernels that ``torch.compile`` generates, with the plain ops as the fallback.

Why: on CPU the eager ops make one pass over memory per op, each with a fresh x-sized (or expansion-sized)
temporary whose page faults cost more than the arithmetic. Compiled, a branch-free formula becomes one loop that
writes every output once, and a reduction over the basis functions runs in the loop that computes them. The basis
expansion of :mod:`kanvision.layers.expansion` and the group rational of :mod:`kanvision.layers.rational_fused`
run here on CPU.

:func:`run` compiles ``fn`` once per process with dynamic sizes (inductor caches the code on disk), twice on AVX-512
machines: a second copy with half-width vectors serves inputs whose rows are not a multiple of 16 float32 (passed
as inductor's ``cpp.simdlen`` option, next to fused multiply-adds; were a torch release to drop an option, the kernels
would compile with inductor's defaults). Dynamo keeps
its usual variants: dtypes, sizes 0 and 1, the Python constants ``fn`` reads (such as a basis' number of
functions) and the global state it guards on, up to its recompile limit per function, past which it runs plain
ops. Where :func:`usable` says no (small inputs, other devices, tensor subclasses, inside an outer
``torch.compile``, ``KANVISION_CPU_KERNELS=0``) and where compiling ``fn`` failed once (with a warning, e.g. no
C++ toolchain), ``fn`` runs as plain ops, with the same results. Under a dispatch mode (FLOP counters) and under
``torch.compiler.set_stance("force_eager")`` dynamo itself runs ``fn`` as plain ops.
"""

from __future__ import annotations

import logging
import os
import types
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["MIN_NUMEL", "canonical", "compiles", "reset", "run", "unviewed", "usable"]

log = logging.getLogger(__name__)

# Below this many inputs the eager ops are already fast, and small inputs (unit tests, gradcheck) need no compile.
MIN_NUMEL = 1 << 15

_compiled: dict[tuple, Callable] = {}
_failed: set[tuple] = set()  # (function, variant) whose compile raised once: plain ops from then on


def usable(
    x: Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64), devices: tuple[str, ...] = ("cpu",)
) -> bool:
    """Whether a kernel for input ``x`` (in its compute dtype, one of ``dtypes``, on one of the device types
    ``devices``) should be compiled code."""
    return (
        not torch.compiler.is_compiling()
        and type(x) is Tensor
        and x.layout == torch.strided
        and x.device.type in devices
        and x.dtype in dtypes
        and x.numel() >= MIN_NUMEL
        and (x.device.type != "cpu" or os.environ.get("KANVISION_CPU_KERNELS", "1") != "0")
    )


def run(
    fn: Callable,
    x: Tensor,
    *args,
    variant: type | None = None,
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64),
    options: dict | None = None,
    devices: tuple[str, ...] = ("cpu",),
):
    """``fn(x, *args)``: compiled where :func:`usable` ``(x, dtypes)`` says so, otherwise as plain ops.

    ``fn`` is a module-level function of traceable ops; ``x`` should be :func:`canonical` (compiled code guards on
    the sizes of a view's base). Each ``variant`` (e.g. the basis class) compiles its own copy of ``fn``, so that
    its variants do not count against the recompile limit of the others. ``options``: more inductor options for
    ``fn`` (``torch.compile``'s ``options``), the same on every call for a given ``fn``. ``devices``: the device types
    to compile for (on CUDA inductor writes Triton kernels from the same formulas).
    """
    if not compiles(fn, x, variant, dtypes, devices):
        return fn(x, *args)
    key = _key(fn, x, variant)
    vector_bits = key[-1]
    try:
        compiled = _compiled.get(key)
        if compiled is None:
            compiled = _compiled[key] = _compile(_copy(fn, variant, vector_bits), vector_bits, options)
        return compiled(x, *args)
    except Exception as error:  # the plain ops are correct, only slower
        _failed.add(key)
        log.debug("compiling %s failed", fn.__name__, exc_info=True)
        warnings.warn(f"kanvision: compiling {fn.__name__} failed, plain ops instead ({error!r})", stacklevel=3)
        return fn(x, *args)


# dynamic_threads: the generated code reads the OpenMP thread count at run time. Contracting a * b + c into one fused
# multiply-add (inductor's default keeps them apart, as eager ops round) takes ~15% off the Horner chains of the
# kernels here, and rounds once where the two operations round twice.
_OPTIONS = {"cpp.dynamic_threads": True, "cpp.enable_floating_point_contract_flag": "fast"}
_OPTIONAL = ("cpp.enable_floating_point_contract_flag",)  # newer than the others: dropped first where refused


def _compile(fn: Callable, vector_bits: int | None = None, extra: dict | None = None) -> Callable:
    """torch.compile of ``fn`` with :data:`_OPTIONS`, the caller's ``extra`` inductor options (and half-width vectors
    where ``vector_bits``). An inductor that refuses them (torch.compile checks its options here) gets them without
    the newer ones, then its defaults; the results agree to rounding."""
    options = _OPTIONS | (extra or {}) | ({"cpp.simdlen": vector_bits} if vector_bits else {})
    essential = {key: value for key, value in options.items() if key not in _OPTIONAL}
    for attempt in (options, essential):
        try:
            return torch.compile(fn, dynamic=True, options=attempt)
        except Exception:
            log.debug("torch.compile refused %s for %s", attempt, fn.__name__, exc_info=True)
    return torch.compile(fn, dynamic=True)


def compiles(
    fn: Callable,
    x: Tensor,
    variant: type | None = None,
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64),
    devices: tuple[str, ...] = ("cpu",),
) -> bool:
    """Whether :func:`run` ``(fn, x, ..., variant=variant, dtypes=dtypes, devices=devices)`` runs compiled code (it may
    still fail on its first call, and run the plain ops from then on)."""
    return usable(x, dtypes, devices) and _key(fn, x, variant) not in _failed


def _key(fn: Callable, x: Tensor, variant: type | None) -> tuple:
    return fn, variant, x.device.type, _vector_bits(x) if x.device.type == "cpu" else None


def _vector_bits(x: Tensor) -> int | None:
    """The vector width for kernels that vectorise along ``x``'s last axis (None: inductor's choice, the widest).

    Inductor's loops run in vectors of the widest width (AVX-512: 16 float32) and do the rest of a row, or a whole
    row shorter than one vector, one element at a time; rows of a length that is not a multiple of 16 (the 24
    channels of a group of KAT-T's first rational) then run mostly scalar. Half-width vectors cover them.
    """
    lanes = 512 // (8 * max(x.element_size(), 4))
    if torch.backends.cpu.get_cpu_capability() == "AVX512" and x.dim() and x.shape[-1] % lanes:
        return 256
    return None


def _copy(fn: Callable, variant: type | None, vector_bits: int | None = None) -> Callable:
    """``fn`` with a code object of its own (dynamo keeps its compiled variants per code object)."""
    if variant is None and vector_bits is None:
        return fn
    suffix = "".join(f"_{part}" for part in (getattr(variant, "__name__", None), vector_bits) if part)
    code = fn.__code__.replace(co_name=f"{fn.__name__}{suffix}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def reset() -> None:
    """Try compiling again the functions that failed (dynamo's own caches stay: see ``torch.compiler.reset``)."""
    _failed.clear()


def unviewed(t: Tensor) -> Tensor:
    """``t`` as a fresh tensor on the same storage, not a view (outside compiled code): compiled code would guard on
    the sizes of a view's base, and autograd forbids in-place changes of views made inside a custom Function."""
    if torch.compiler.is_compiling():
        return t
    return t.new_empty(0).set_(t.untyped_storage(), t.storage_offset(), t.shape, t.stride())


def canonical(t: Tensor) -> Tensor:
    """``t`` contiguous with the standard strides (also on size-1 axes, which ``contiguous()`` keeps as they are),
    :func:`unviewed`."""
    t = t.contiguous()
    strides = [1] * t.dim()
    for d in range(t.dim() - 2, -1, -1):
        strides[d] = strides[d + 1] * t.shape[d + 1]
    return unviewed(t.as_strided(t.shape, strides))
