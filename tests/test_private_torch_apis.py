"""Every private torch internal kanvision relies on, with its reason, checked loudly: a torch release that renames or
changes one fails here by name (not deep inside a layer), and a new private use in kanvision fails until it is listed.

The reasons (also in the README's contributing notes):
- the CPU kernel cache (kernels/basis_expansion.py, also used by the fused group rational) compiles branch-free
  formulas with dynamo and must know when NOT to (inside a dispatch/function mode such as FLOP counters, under
  functorch transforms, when dynamo is disabled or its stance is not the default), which variant it compiled
  (dynamo's global-state guard, cache entries, recompile limit) and how to forget one (reset_code); it specialises
  float constants and turns off duck shaping for its own compiles only (config patches);
- the fused paths fall back to plain ops under functorch transforms and forward-mode AD (no public query for either
  exists: ``torch._C._are_functorch_transforms_active``, ``torch.autograd.forward_ad._current_level``);
- the group-rational custom op's autocast rule casts only x, not the coefficients, which needs to exclude the
  autocast dispatch key while it calls the op (torch.library.register_autocast would cast the coefficients too).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

PACKAGE = Path(__file__).resolve().parents[1] / "kanvision"

# every private name used in kanvision, as written there
PRIVATE = {
    "torch._C._len_torch_dispatch_stack",
    "torch._C._len_torch_function_stack",
    "torch._C._are_functorch_transforms_active",
    "torch._C._functorch.is_functorch_wrapped_tensor",
    "torch._C._functorch.is_legacy_batchedtensor",
    "torch._C._dynamo.eval_frame.reset_code",
    "torch._C._dynamo.eval_frame._debug_get_cache_entry_list",
    "torch._C._dynamo.guards.GlobalStateGuard",
    "torch._C.DispatchKeySet",
    "torch._C.DispatchKey",
    "torch._C._ExcludeDispatchKeyGuard",
    "torch._dynamo.config.patch",
    "torch._dynamo.config.disable",
    "torch._dynamo.config.recompile_limit",
    "torch._dynamo.eval_frame._stance",
    "torch._inductor.exc",
    "torch.fx.experimental._config",
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


def test_the_queries_mean_what_the_kernels_rely_on():
    assert torch._C._len_torch_dispatch_stack() == 0 and torch._C._len_torch_function_stack() == 0

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Mode():
        assert torch._C._len_torch_dispatch_stack() == 1
    with torch.device("meta"):
        assert torch._C._len_torch_function_stack() == 1
    assert not torch._C._are_functorch_transforms_active()
    seen = []

    def probe(t):
        seen.append((torch._C._are_functorch_transforms_active(), torch._C._functorch.is_functorch_wrapped_tensor(t)))
        return t

    torch.vmap(probe)(torch.zeros(2, 3))
    assert seen == [(True, True)]
    assert not torch._C._functorch.is_functorch_wrapped_tensor(torch.zeros(2))
    from torch.autograd import forward_ad

    assert forward_ad._current_level < 0
    with forward_ad.dual_level():
        assert forward_ad._current_level >= 0
    assert torch._dynamo.eval_frame._stance.stance == "default"
    with torch.compiler.set_stance("force_eager"):
        assert torch._dynamo.eval_frame._stance.stance == "force_eager"
    assert isinstance(torch._dynamo.config.recompile_limit, int) and torch._dynamo.config.disable is False
    state = torch._C._dynamo.guards.GlobalStateGuard().__getstate__()
    with torch.no_grad():
        assert torch._C._dynamo.guards.GlobalStateGuard().__getstate__() != state  # grad mode is part of it


def test_the_autocast_exclusion_turns_autocast_off_for_the_op():
    key = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)
    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with torch._C._ExcludeDispatchKeyGuard(key):
            assert (a @ a).dtype == torch.float32
