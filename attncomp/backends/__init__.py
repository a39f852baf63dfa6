"""Backends: each turns a Program into a kernel callable ``kernel(*inputs, **tensors)``.

- ``reference``: dense torch evaluation of any Program (the oracle).
- ``flex``: softmax attention through PyTorch's FlexAttention with generated mods and an
  analytic BlockMask.
- ``triton``: generated Triton kernels for masks, score mods and cascades.
"""

from __future__ import annotations

from ..errors import AttncompError, api_boundary
from ..ir.program import Program
from .flex import FlexKernel
from .reference import ReferenceKernel
from .triton import TritonKernel

BACKENDS = {"reference": ReferenceKernel, "flex": FlexKernel, "triton": TritonKernel}


@api_boundary
def compile(spec: Program, backend: str = "reference", **options):
    """Compile ``spec`` for ``backend``; the kernel is called as ``kernel(q, k, v, **tensors)``.

    >>> import attncomp as ac
    >>> ac.compile(ac.attention(), backend="reference")
    ReferenceKernel(attention)
    """
    if not isinstance(spec, Program):
        raise AttncompError(f"ac.compile expects a Program (from ac.attention, ac.cascade or attncomp.variants), "
                            f"got {type(spec).__name__}")
    if backend not in BACKENDS:
        raise AttncompError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}", variant=spec.name)
    return BACKENDS[backend](spec, **options)
