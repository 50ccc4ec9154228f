"""Every private torch internal kanvision relies on, with its reason, checked loudly: a torch release that renames or
changes one fails here by name (not deep inside a layer), and a new private use in kanvision fails until it is listed.

The reasons (also in the README's contributing notes):
- the fused paths (basis expansion, group rational; ``kanvision.layers.helpers.plain_ops_required``) fall back to
  plain ops under functorch transforms, forward-mode AD and batched gradients (no public query for any of them
  exists: ``torch._C._are_functorch_transforms_active``, ``torch.autograd.forward_ad._current_level``,
  ``torch._C._functorch.is_legacy_batchedtensor``);
- the group-rational custom op's autocast rule casts only x, not the coefficients, which needs to exclude the
  autocast dispatch key while it calls the op (torch.library.register_autocast would cast the coefficients too).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

PACKAGE = Path(__file__).resolve().parents[1] / "kanvision"

# every private name used in kanvision, as written there
PRIVATE = {
    "torch._C._are_functorch_transforms_active",
    "torch._C._functorch.is_legacy_batchedtensor",
    "torch._C.DispatchKeySet",
    "torch._C.DispatchKey",
    "torch._C._ExcludeDispatchKeyGuard",
    "torch.autograd.forward_ad._current_level",
}


def _resolve(dotted: str):
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("dotted", sorted(PRIVATE))
def test_each_private_name_still_exists(dotted):
    _resolve(dotted)


def test_no_unlisted_private_use_in_the_package():
    # torch.x._y..., "from torch.x import _y", and the private level of torch.autograd.forward_ad
    pattern = re.compile(r"torch(?:\.\w+)*?\._(?!_)\w+(?:\.\w+)*|from (torch[\w.]*) import (_\w+)|forward_ad\._\w+")
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for line in path.read_text().splitlines():
            for match in pattern.finditer(line.split("#", 1)[0]):
                name = f"{match.group(1)}.{match.group(2)}" if match.group(1) else match.group(0)
                found.add("torch.autograd." + name if name.startswith("forward_ad.") else name)
    unlisted = sorted(f for f in found if not any(f == p or f.startswith(p + ".") or p.startswith(f) for p in PRIVATE))
    assert unlisted == [], f"private torch names used in kanvision but not listed (with a reason) here: {unlisted}"


def test_the_queries_mean_what_the_fused_paths_rely_on():
    assert not torch._C._are_functorch_transforms_active()
    seen = []

    def probe(t):
        seen.append(torch._C._are_functorch_transforms_active())
        return t

    torch.vmap(probe)(torch.zeros(2, 3))
    assert seen == [True]

    class Probe(torch.autograd.Function):  # batched gradients reach a backward as legacy batched tensors
        @staticmethod
        def forward(ctx, t):
            return t.clone()

        @staticmethod
        def backward(ctx, grad):
            seen.append(torch._C._functorch.is_legacy_batchedtensor(grad))
            return grad

    x = torch.zeros(3, requires_grad=True)
    torch.autograd.grad(Probe.apply(x), x, torch.ones(2, 3), is_grads_batched=True)
    assert seen == [True, True] and not torch._C._functorch.is_legacy_batchedtensor(x)
    from torch.autograd import forward_ad

    assert forward_ad._current_level < 0
    with forward_ad.dual_level():
        assert forward_ad._current_level >= 0


def test_the_autocast_exclusion_turns_autocast_off_for_the_op():
    key = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)
    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with torch._C._ExcludeDispatchKeyGuard(key):
            assert (a @ a).dtype == torch.float32
