"""The Triton backend's kernel object: plan, generated module, launch.

On CUDA tensors the module is compiled by Triton; on CPU tensors it is run by Triton's
interpreter (``TRITON_INTERPRET=1``), which is how the tests check every kernel on
machines without a GPU.
"""

from __future__ import annotations

import os
import sys

import torch

from ...errors import UnsupportedError, api_boundary
from ...ir.analysis import analyze
from ...ir.passes import optimize
from ...ir.program import Program
from ..binding import bind
from ..cache import CallCache
from ..modules import load_module
from .codegen import generate_source
from .plan import lower


def interpreter_ready() -> bool:
    """Make Triton run kernels in its interpreter (for CPU tensors), if it still can.

    Triton picks interpreter or compiler when a function is decorated, its own library
    included, so the switch must happen before ``import triton``: then we set
    ``TRITON_INTERPRET=1`` for the process; afterwards only if it was already set."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    if "triton" in sys.modules:
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    return True


class TritonKernel:
    """``kernel(*inputs, **tensors)`` through a generated Triton kernel.

    ``block`` is (BLOCK_M, BLOCK_N), the tile of both the kernel and the analysis;
    ``store_lse`` also returns the logsumexp of single-softmax kernels; after a call
    with ``count=True``, ``kernel.last_stats`` holds per program (partial tiles, full
    tiles, mask evaluations).

    >>> import torch, attncomp as ac
    >>> kernel = ac.compile(ac.variants.causal(), backend="triton", block=(16, 16))
    >>> q = k = v = torch.randn(1, 1, 40, 16)
    >>> bool(torch.allclose(kernel(q, k, v), ac.compile(ac.variants.causal())(q, k, v), atol=1e-5))
    True
    """

    backend = "triton"

    def __init__(self, spec: Program, block=(64, 64), store_lse: bool = False, count: bool = False):
        self.spec = spec
        self.program = optimize(spec, fold_params=False)
        self.plan = lower(self.program)
        self.block = (block, block) if isinstance(block, int) else tuple(block)
        self.store_lse, self.count = store_lse, count
        self.source = generate_source(self.program, self.plan)
        self._module: dict | None = None
        self.cache = CallCache()
        self.last_stats = None
        self.last_lse = None

    def module(self, device: torch.device) -> dict:
        """The loaded module; CPU tensors need Triton's interpreter."""
        if device.type != "cuda" and not interpreter_ready():
            raise UnsupportedError("Triton kernels run on CPU tensors only in Triton's interpreter, which must be "
                                   "chosen before triton is imported", variant=self.spec.name,
                                   hint="Set TRITON_INTERPRET=1 in the environment (or pass CUDA tensors)")
        if self._module is None:
            self._module = load_module(self.source, f"attncomp_triton_{self.spec.name}")
        return self._module

    def layout(self, bound):
        return analyze(self.program, bound.sizes["m"], bound.sizes["n"], self.block, tensors=bound.tensors,
                       batch=bound.sizes.get("b", 1), heads=bound.sizes.get("h", 1))

    def blocks(self, bound, device):
        """(layout, block-list tensors) for a bound call, cached."""
        def build():
            layout = self.layout(bound)
            as_t = lambda a: torch.from_numpy(a.astype("int32")).to(device)
            return layout, (as_t(layout.partial.offsets), as_t(layout.partial.indices),
                            as_t(layout.full.offsets), as_t(layout.full.indices))
        return self.cache.get(bound, device, build)

    @api_boundary
    def __call__(self, *args: torch.Tensor, **tensors: torch.Tensor) -> torch.Tensor:
        bound = bind(self.program, args, tensors)
        device = bound.device
        layout, blocks = self.blocks(bound, device)
        inputs = [bound.inputs[n] for n in self.plan.inputs]
        kv_heads = {bound.inputs[n].shape[1] for n in self.plan.inputs if "n" in self.program.input(n).letters}
        if len(kv_heads) != 1:
            raise UnsupportedError("all key-side inputs must have the same number of heads", variant=self.spec.name)
        runtime = [bound.tensors[t] for t in self.program.tensors]
        fn = self.module(device)["attention"]
        with torch.no_grad():
            out, lse, stats = fn(*inputs, *runtime, blocks, layout_shape=layout.shape, block_m=self.block[0],
                                 block_n=self.block[1], store_lse=self.store_lse, count=self.count)
        self.last_stats, self.last_lse = stats, lse
        return out

    def __repr__(self) -> str:
        return f"TritonKernel({self.spec.name}, block={self.block})"
