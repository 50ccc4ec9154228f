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
