import os
import sys

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
