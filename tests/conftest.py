import os

# Triton kernels run on the CPU in Triton's interpreter, which must be chosen before triton is first imported
# (timm and torch._dynamo import it), so it is set here, before any test module is collected.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def compiled_calls(monkeypatch):
    """(kernel name, whether compiled code ran it) for every call of ``kanvision.kernels.compiled.run`` on an input
    large enough for compiled code, with the compiled kernels enabled."""
    from kanvision.kernels import compiled

    monkeypatch.delenv("KANVISION_CPU_KERNELS", raising=False)
    record = []
    run = compiled.run

    def spy(fn, x, *args, **kwargs):
        check = (fn, x, kwargs.get("variant"), kwargs.get("dtypes", (torch.float32, torch.float64)))
        took = compiled.compiles(*check)
        out = run(fn, x, *args, **kwargs)
        if x.numel() >= compiled.MIN_NUMEL:
            record.append((fn.__name__, took and compiled.compiles(*check)))
        return out

    monkeypatch.setattr(compiled, "run", spy)
    return record
