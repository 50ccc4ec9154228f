"""``kanify``: turn the MLPs of a timm network into KAN form, in place.

Two ways, after the Kolmogorov-Arnold Transformer (Yang & Wang, arXiv 2409.10594; github.com/Adamdad/kat):

- ``where="act"``: the activation between ``fc1`` and ``fc2`` becomes a group-shared learnable function,
  :class:`~kanvision.layers.GroupRational` (``kan="rational"``, KAT's GR-KAN) or :class:`~kanvision.layers.GroupKAN`
  of a registered basis, started from the activation it replaces;
- ``where="mlp"``: ``fc1`` and ``fc2`` become KAN layers of the basis ``kan`` (:class:`~kanvision.layers.KANLinear`,
  or a 1x1 :class:`~kanvision.layers.KANConv2d` where the MLP works on NCHW maps) and the activation between them
  an ``nn.Identity`` (a KAN layer carries its own nonlinearity): KAT's "ViT + KAN" baseline.

The MLPs found are the ``timm.layers`` ones: ``Mlp`` (ViT, DeiT, EVA, Swin, ConvNeXt, MLP-Mixer's token and channel
MLPs, ResMLP, attention-pool heads), ``ConvMlp``, ``GlobalResponseNormMlp`` (ConvNeXt-V2), ``GatedMlp`` (gMLP),
and the gated ``GluMlp`` / ``SwiGLU`` (EVA-02; ``where="act"`` only). The arguments are recorded in
``model.kanify_recipe`` (plain data), so checkpoints written by kanvision rebuild the converted network.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from timm.layers import ConvMlp, GatedMlp, GlobalResponseNormMlp, GluMlp, Mlp, SwiGLU
from torch import Tensor, nn

from kanvision.layers import GroupActivation, GroupKAN, GroupRational, KANConv2d, KANLinear, list_kans
from kanvision.layers.group_kan import GROUP_KAN_INITS
from kanvision.layers.kan_layer import KANLayer

__all__ = [
    "kanify",
    "KanifyReport",
    "Replacement",
    "check_kanify_arguments",
    "check_kanify_config",
    "kanify_recipe",
    "list_kanify_mlps",
]

KANIFY_ARGUMENTS = ("kan", "where", "kan_kwargs", "pattern", "groups")
_WHERE = ("act", "mlp")
_DEFAULT_GROUPS = 8

# the MLP classes kanify converts (matched by exact type: a subclass may compute something else)
_MLPS: tuple[type[nn.Module], ...] = (Mlp, ConvMlp, GlobalResponseNormMlp, GatedMlp, GluMlp, SwiGLU)
# their activation is a gate (x1 * act(x2)): it can learn, but the MLP has no single fc1 -> act -> fc2 path
_GATED: tuple[type[nn.Module], ...] = (GluMlp, SwiGLU)

# arguments kanify sets itself (from the MLP it converts), so kan_kwargs may not
_RESERVED = {
    GroupKAN: ("num_channels", "groups", "basis", "channel_dim"),
    GroupRational: ("num_channels", "groups", "channel_dim"),
    KANLinear: ("in_features", "out_features", "basis", "bias", "device", "dtype"),
}
# KANConv2d takes these too, with the same meaning; its other options (stride, padding, ...) make no 1x1 conv
_KAN_LAYER_KWARGS = ("basis_kwargs", "base_activation", "drop_rate", "recompute_basis")

# named inits that both group activations have, in the order they are tried against the replaced activation
_NAMED_INITS: tuple[tuple[str, Callable[[Tensor], Tensor]], ...] = tuple(
    (name, GROUP_KAN_INITS[name]) for name in ("identity", "gelu", "swish", "relu")
)
_MATCH_TOLERANCE = 1e-6  # float64: GELU's tanh approximation (4.7e-4 away) is not GELU


class Replacement(NamedTuple):
    """One converted module: its qualified name, what it was and what it is now."""

    name: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.name}: {self.old} -> {self.new}"


@dataclass
class KanifyReport:
    """What :func:`kanify` replaced, and the network's parameter count before and after."""

    replaced: list[Replacement] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0

    def __str__(self) -> str:
        lines = [str(r) for r in self.replaced]
        lines.append(f"parameters: {self.params_before:,} -> {self.params_after:,}")
        return "\n".join(lines)


def list_kanify_mlps() -> list[str]:
    """Names of the ``timm.layers`` MLP classes :func:`kanify` converts."""
    return [cls.__name__ for cls in _MLPS]


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _target_class(kan: str, where: str) -> type[nn.Module]:
    if where == "mlp":
        return KANLinear
    return GroupRational if kan == "rational" else GroupKAN


def _allowed_kwargs(kan: str, where: str) -> list[str]:
    if where == "mlp":
        return list(_KAN_LAYER_KWARGS)
    cls = _target_class(kan, where)
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    return [n for n in names if n not in _RESERVED[cls]]


def check_kanify_arguments(
    kan: Any = "rational",
    where: Any = "act",
    kan_kwargs: Any = None,
    pattern: Any = None,
    groups: Any = None,
    prefix: str = "kanify: ",
) -> dict[str, Any]:
    """The arguments of :func:`kanify` as its recipe (``groups`` resolved), or a ``ValueError``/``TypeError`` naming
    the bad one (after ``prefix``, e.g. ``"model.kanify."``) and what is valid. Needs no network."""
    if where not in _WHERE:
        raise ValueError(f"{prefix}where={where!r} is invalid: expected one of {list(_WHERE)}")
    valid = list_kans()
    if not isinstance(kan, str) or kan not in valid:
        raise ValueError(f"{prefix}kan={kan!r} is invalid: expected 'rational' (GroupRational) or a basis {valid[1:]}")
    if where == "mlp" and kan == "rational":
        raise ValueError(
            f"{prefix}kan='rational' with where='mlp' is invalid: a rational is an activation, not a KAN layer's "
            f"basis; use where='act' for GroupRational, or a basis in {valid[1:]} for KAN layers"
        )
    if where == "act":
        groups = _DEFAULT_GROUPS if groups is None else groups
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"{prefix}groups={groups!r} is invalid: expected a positive integer dividing MLP widths")
    elif groups is not None:
        raise ValueError(f"{prefix}groups={groups!r} does not apply to where='mlp' (KAN layers have no groups)")
    if pattern is not None:
        patterns = [pattern] if isinstance(pattern, str) else pattern
        if not isinstance(patterns, Sequence) or not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(
                f"{prefix}pattern={pattern!r} is invalid: expected an fnmatch pattern of module names "
                "(e.g. 'blocks.*.mlp') or a list of them"
            )
        pattern = pattern if isinstance(pattern, str) else list(pattern)
    if kan_kwargs is None:
        kan_kwargs = {}
    if not isinstance(kan_kwargs, Mapping) or not all(isinstance(k, str) for k in kan_kwargs):
        raise TypeError(f"{prefix}kan_kwargs must be a mapping of argument names to values, got {kan_kwargs!r}")
    allowed = _allowed_kwargs(kan, where)
    unknown = sorted(set(kan_kwargs) - set(allowed))
    if unknown:
        what = _target_class(kan, where).__name__
        raise ValueError(
            f"{prefix}kan_kwargs {unknown} are not {what} arguments kanify passes on; valid: {allowed} "
            "(the widths, basis, groups and layout follow from the model and the other kanify arguments)"
        )
    return {"kan": kan, "where": where, "groups": groups, "pattern": pattern, "kan_kwargs": dict(kan_kwargs)}


def check_kanify_config(config: Any, key: str = "kanify") -> dict[str, Any] | None:
    """A mapping of :func:`kanify` arguments (a config's ``model.kanify``; None: off) as its checked recipe, or a
    ``ValueError``/``TypeError`` naming ``key``, the bad entry and the valid ones."""
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise ValueError(f"{key} must be a mapping of kanvision.kanify arguments or null, got {config!r}")
    unknown = sorted(set(config) - set(KANIFY_ARGUMENTS))
    if unknown:
        raise ValueError(f"{key}: unknown keys {unknown}; valid: {list(KANIFY_ARGUMENTS)}")
    return check_kanify_arguments(**config, prefix=f"{key}.")


def _plain_data(value: Any) -> Any:
    """``value`` with tuples as lists (JSON's form, what a checkpoint gives back)."""
    if isinstance(value, Mapping):
        return {k: _plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_data(v) for v in value]
    return value


def kanify_recipe(model: nn.Module, source: str = "model") -> list[dict[str, Any]] | None:
    """The :func:`kanify` steps applied to ``model`` (None if none), checked to be plain data that a file can hold;
    else a ``ValueError`` naming ``source``."""
    recipe = getattr(model, "kanify_recipe", None)
    if recipe is None:
        return None
    from kanvision.utils.safe_config import UnsafeConfigError, check_file_config

    try:
        json.dumps(recipe, allow_nan=False)
        check_file_config(recipe, source, "kanify_recipe", allow_targets=False)
    except (TypeError, ValueError, UnsafeConfigError) as error:
        raise ValueError(
            f"{source} was converted by kanify with arguments that are not plain data ({error}); a file cannot "
            "record them, so give kan_kwargs as names and numbers (e.g. init='gelu' or (numerator, denominator))"
        ) from error
    return [dict(step) for step in recipe]


def _matches(name: str, pattern: str | list[str] | None) -> bool:
    if pattern is None:
        return True
    patterns = [pattern] if isinstance(pattern, str) else pattern
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _width(layer: nn.Module) -> tuple[int, int]:
    """(in, out) of an nn.Linear or 1x1 nn.Conv2d."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels


def _is_conv(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d)


def _act_width_and_dim(mlp: nn.Module) -> tuple[int, int]:
    """(channels the activation sees, their axis): tokens (..., C) -> -1, NCHW (1x1 convs) -> 1."""
    if isinstance(mlp, SwiGLU):
        return mlp.fc1_x.out_features, -1
    width = _width(mlp.fc1)[1]
    dim = 1 if _is_conv(mlp.fc1) else -1
    return (width // 2, mlp.chunk_dim) if isinstance(mlp, GluMlp) else (width, dim)


def _converted(mlp: nn.Module) -> bool:
    return isinstance(getattr(mlp, "act", None), GroupActivation) or isinstance(getattr(mlp, "fc1", None), KANLayer)


def _identify(act: nn.Module, name: str) -> tuple[str | None, Callable[[Tensor], Tensor]]:
    """The named init the activation ``act`` computes (within 1e-6 on [-6, 6], float64), or None; and ``act`` as a
    float64 function for a fit."""
    probe = copy.deepcopy(act).to("cpu", torch.float64).eval()

    @torch.no_grad()
    def function(x: Tensor) -> Tensor:
        return probe.forward(x.clone())  # a clone: it may work in place; forward: without the network's hooks

    function.__name__ = type(act).__name__
    grid = torch.linspace(-6.0, 6.0, 1201, dtype=torch.float64)
    try:
        rows, columns = function(grid[None, :]), function(grid[:, None])
    except Exception as error:  # noqa: BLE001  (any module: say which one cannot be probed)
        raise ValueError(
            f"kanify: {name} ({act}) cannot be evaluated elementwise ({type(error).__name__}: {error}); give "
            "kan_kwargs={'init': ...} or a pattern that excludes it"
        ) from error
    if rows.shape != (1, grid.numel()) or not torch.allclose(rows.flatten(), columns.flatten(), atol=1e-12):
        raise ValueError(f"kanify: {name} ({act}) is not an elementwise activation; use a pattern that excludes it")
    for init, reference in _NAMED_INITS:
        if float((rows.flatten() - reference(grid)).abs().max()) <= _MATCH_TOLERANCE:
            return init, function
    return None, function


def _describe(module: nn.Module) -> str:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        a, b = _width(module)
        return f"{type(module).__name__}({a}, {b})"
    if isinstance(module, KANLinear):
        return f"KANLinear({module.in_features}, {module.out_features}, basis={module.basis.registry_name})"
    if isinstance(module, KANConv2d):
        return f"KANConv2d({module.in_channels}, {module.out_channels}, 1x1, basis={module.basis.registry_name})"
    if isinstance(module, GroupKAN):
        return f"GroupKAN({module.num_channels}, groups={module.groups}, basis={module.basis.registry_name}, " + (
            f"init={module.init!r}, channel_dim={module.channel_dim})"
        )
    if isinstance(module, GroupRational):
        return (
            f"GroupRational({module.num_channels}, groups={module.groups}, order={module.order}, "
            f"init={module.init!r}, channel_dim={module.channel_dim})"
        )
    return type(module).__name__


def _place(new: nn.Module, like: nn.Module) -> nn.Module:
    """``new`` on the device (and floating dtype) of ``like``'s parameters."""
    reference = next(like.parameters(), None)
    if reference is None:
        return new
    if reference.is_floating_point():
        return new.to(device=reference.device, dtype=reference.dtype)
    return new.to(device=reference.device)


def _new_activation(name: str, mlp: nn.Module, step: dict[str, Any]) -> nn.Module:
    width, channel_dim = _act_width_and_dim(mlp)
    groups, kan, kwargs = step["groups"], step["kan"], dict(step["kan_kwargs"])
    if width % groups:
        valid = [g for g in range(1, width + 1) if width % g == 0]
        raise ValueError(
            f"kanify: groups={groups} does not divide the width {width} of {name}.act; valid groups: {valid}"
        )
    if "init" not in kwargs:
        init, function = _identify(mlp.act, f"{name}.act")
        if init is None and kan == "rational":
            raise ValueError(
                f"kanify: {name}.act is {mlp.act}, which matches none of GroupRational's named inits "
                f"({[n for n, _ in _NAMED_INITS]}, within {_MATCH_TOLERANCE} on [-6, 6]); give "
                "kan_kwargs={'init': <name or (numerator, denominator)>} (scripts/fit_rational.py fits one) "
                "or use a GroupKAN basis, which fits any activation"
            )
        kwargs["init"] = init if init is not None else function
    if kan == "rational":
        new = GroupRational(width, groups=groups, channel_dim=channel_dim, **kwargs)
    else:
        new = GroupKAN(width, groups=groups, basis=kan, channel_dim=channel_dim, **kwargs)
    return _place(new, mlp)


def _new_kan_layer(fc: nn.Module, kan: str, kwargs: dict[str, Any]) -> nn.Module:
    a, b = _width(fc)
    bias = fc.bias is not None
    if _is_conv(fc):
        if fc.kernel_size != (1, 1) or fc.stride != (1, 1) or fc.groups != 1:
            raise ValueError(f"kanify: where='mlp' needs 1x1 convolutions, got {fc}")
        new = KANConv2d(a, b, kernel_size=1, bias=bias, basis=kan, **kwargs)
    else:
        new = KANLinear(a, b, basis=kan, bias=bias, **kwargs)
    return _place(new, fc)


def _plan(model: nn.Module, step: dict[str, Any]) -> list[tuple[str, nn.Module]]:
    """The MLPs ``step`` converts (qualified name, module), or an error saying what was looked for."""
    mlps = [(n, m) for n, m in model.named_modules() if type(m) in _MLPS]
    chosen = [(n, m) for n, m in mlps if _matches(n, step["pattern"])]
    looked_for = f"timm.layers MLPs ({', '.join(list_kanify_mlps())})"
    where = f"{type(model).__name__}"
    if step["pattern"] is not None:
        looked_for += f" named like pattern={step['pattern']!r}"
    if not chosen:
        if mlps:
            names = [n for n, _ in mlps]
            hint = f"; its MLPs are {names[:4]}{' ...' if len(names) > 4 else ''}"
        else:
            named = [n for n, _ in model.named_modules() if n and _matches(n, step["pattern"])]
            hint = f"; the pattern matches {named[:4]}, none of them such an MLP" if step["pattern"] and named else ""
        raise ValueError(f"kanify: {where} has no {looked_for}{hint}; nothing to convert")
    todo = [(n, m) for n, m in chosen if not _converted(m)]
    if not todo:
        raise ValueError(f"kanify: every one of the {len(chosen)} {looked_for} of {where} is converted already")
    if step["where"] == "mlp":
        gated = [f"{n} ({type(m).__name__})" for n, m in todo if isinstance(m, _GATED)]
        if gated:
            raise ValueError(
                f"kanify: where='mlp' cannot convert gated MLPs {gated[:4]}: their activation multiplies two "
                "projections, so two KAN layers would be another network; use where='act' (a learnable gate) or a "
                "pattern that excludes them"
            )
    return todo


def kanify(
    model: nn.Module,
    kan: str = "rational",
    where: str = "act",
    kan_kwargs: Mapping[str, Any] | None = None,
    pattern: str | Sequence[str] | None = None,
    groups: int | None = None,
) -> KanifyReport:
    """Convert the MLPs of a timm ``model`` to KAN form in place (see the module docstring) and return a report.

    Args:
        model: a timm network (anything with ``timm.layers`` MLPs).
        kan: ``"rational"`` (:class:`~kanvision.layers.GroupRational`, ``where="act"`` only) or a basis name of
            :func:`~kanvision.layers.list_bases`.
        where: ``"act"`` (the activation between fc1 and fc2 becomes a group activation, initialised to the
            function it replaces: GELU -> ``"gelu"``, SiLU -> ``"swish"``, ReLU -> ``"relu"``, identity; other
            activations a GroupKAN fits by least squares, a GroupRational needs ``kan_kwargs["init"]``) or ``"mlp"``
            (fc1, fc2 become KAN layers of ``kan``, the activation an ``nn.Identity``).
        kan_kwargs: further constructor arguments of GroupKAN / GroupRational / KANLinear (e.g. ``basis_kwargs``,
            ``order``, ``init``, ``base_activation``).
        pattern: fnmatch pattern(s) of the MLP modules' qualified names (e.g. ``"blocks.*.mlp"``,
            ``"*.mlp_channels"``); None: every MLP.
        groups: groups of the activation (``where="act"``; default 8); must divide every converted MLP's width.

    The step is appended to ``model.kanify_recipe`` (a list of these arguments, plain data), which kanvision's
    checkpoints record and :func:`~kanvision.load_checkpoint` replays. Nothing changes when an error is raised.
    """
    step = check_kanify_arguments(kan, where, kan_kwargs, pattern, groups)
    todo = _plan(model, step)
    report = KanifyReport(params_before=_num_params(model))
    # build everything first: an error leaves the model as it was
    new_modules: list[tuple[str, nn.Module, dict[str, nn.Module]]] = []
    for name, mlp in todo:
        if step["where"] == "act":
            new_modules.append((name, mlp, {"act": _new_activation(name, mlp, step)}))
        else:
            swap = {fc: _new_kan_layer(getattr(mlp, fc), step["kan"], step["kan_kwargs"]) for fc in ("fc1", "fc2")}
            swap["act"] = nn.Identity()
            new_modules.append((name, mlp, swap))
    for name, mlp, swap in new_modules:
        if step["where"] == "act":
            report.replaced.append(Replacement(f"{name}.act", _describe(mlp.act), _describe(swap["act"])))
        else:
            old = f"{type(mlp).__name__}({_describe(mlp.fc1)}, {_describe(mlp.act)}, {_describe(mlp.fc2)})"
            new = f"{type(mlp).__name__}({_describe(swap['fc1'])}, Identity, {_describe(swap['fc2'])})"
            report.replaced.append(Replacement(name, old, new))
        for attribute, module in swap.items():
            setattr(mlp, attribute, module)
    recipe = list(getattr(model, "kanify_recipe", None) or [])
    model.kanify_recipe = recipe + [_plain_data(step) if _is_data(step) else step]
    report.params_after = _num_params(model)
    return report


def _is_data(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_data(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_data(v) for v in value)
    return False
