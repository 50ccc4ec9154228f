import os

# Triton kernels run on the CPU in Triton's interpreter, which must be chosen before triton is first imported
# (timm and torch._dynamo import it), so it is set here, before any test module is collected.
os.environ.setdefault("TRITON_INTERPRET", "1")
# pytest-xdist workers share the cores: a thread pool of every core in each would oversubscribe them (the fast tier took
# 3 min 41 s instead of 2 min 3 s on 2 cores). Set before torch is imported, so that subprocesses inherit it too.
if "PYTEST_XDIST_WORKER" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

SLOW_TIER = Path(__file__).with_name("slow_tier.txt")


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection
def pytest_collection_modifyitems(config, items):
    """Mark the tests listed in ``slow_tier.txt`` slow; a listed id in a collected file that names no test fails."""
    listed = {line.strip() for line in SLOW_TIER.read_text().splitlines() if line.strip() and not line.startswith("#")}
    collected = {item.nodeid for item in items}
    files = {nodeid.split("::")[0] for nodeid in collected}
    stale = sorted(n for n in listed if n.split("::")[0] in files and n not in collected)
    if stale and not any("::" in arg for arg in config.args):  # a test id on the command line collects only it
        raise pytest.UsageError(f"{SLOW_TIER.name} lists tests that do not exist: {stale}")
    for item in items:
        if item.nodeid in listed:
            item.add_marker(pytest.mark.slow)


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
