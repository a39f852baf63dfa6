"""Backends register behind one interface; compile, the report and the CLI find them there."""

import pytest
import torch

import attncomp as ac
from attncomp.backends import BACKENDS, Kernel, register
from attncomp.backends.registry import generated
from attncomp.cli import build_parser


def test_the_built_in_backends_in_order():
    assert list(BACKENDS) == ["reference", "triton", "flex"]
    assert [b.name for b in generated()] == ["triton", "flex"]
    spec = ac.variants.causal()
    for b in BACKENDS.values():
        kernel = ac.compile(spec, backend=b.name)
        assert isinstance(kernel, Kernel) and kernel.backend == b.name
        assert isinstance(kernel.source, str) == b.generated


def test_unknown_backend_lists_the_registered_ones():
    with pytest.raises(ac.AttncompError, match="unknown backend 'cuda'; available: reference, triton, flex"):
        ac.compile(ac.variants.causal(), backend="cuda")


@pytest.fixture
def doubled():
    """A toy backend: the reference output times two, with a one-line source."""
    @register("doubled", "Doubled")
    class Doubled(Kernel):
        def __init__(self, spec):
            super().__init__(spec)
            self.source = f"# twice {self.spec.name}\n"

        def run(self, bound):
            return 2 * ac.compile(self.spec)(**bound.inputs, **bound.tensors)

    yield Doubled
    del BACKENDS["doubled"]


def test_a_registered_backend_is_compiled_bound_and_listed(doubled):
    kernel = ac.compile(ac.variants.causal(), backend="doubled")
    q = k = v = torch.randn(1, 1, 8, 4)
    torch.testing.assert_close(kernel(q, k, v), 2 * ac.compile(ac.variants.causal())(q, k, v))
    with pytest.raises(ac.AttncompError, match="missing input"):  # binding is the shared one
        kernel(q, k)
    args = build_parser().parse_args(["compile", "causal", "--backend", "doubled"])
    assert args.backend == "doubled"
