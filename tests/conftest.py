import os
import sys

# Triton decides between compiler and interpreter when it is imported: without a GPU the
# Triton backend's kernels run in its interpreter, so choose it before anything imports it.
if not os.environ.get("CUDA_VISIBLE_DEVICES") and "TRITON_INTERPRET" not in os.environ:
    import torch as _torch

    if not _torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests import the oracles module directly

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def rand64():
    gen = torch.Generator().manual_seed(1234)

    def make(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)
    return make
