"""Backends: each turns a Program into a kernel callable ``kernel(*inputs, **tensors)``.

- ``reference``: dense torch evaluation of any Program (the oracle).
- ``flex``: softmax attention through PyTorch's FlexAttention with generated mods and an
  analytic BlockMask.
- ``triton``: generated Triton kernels for masks, score mods and cascades.
"""

from __future__ import annotations

from ..errors import AttncompError, located, user_location
from ..ir.program import Program
from .flex import FlexKernel
from .reference import ReferenceKernel
from .triton import TritonKernel

BACKENDS = {"reference": ReferenceKernel, "flex": FlexKernel, "triton": TritonKernel}


def compile(spec: Program, backend: str = "reference", **options):
    """Compile ``spec`` for ``backend``; the kernel is called as ``kernel(q, k, v, **tensors)``.

    >>> import attncomp as ac
    >>> ac.compile(ac.attention(), backend="reference")
    ReferenceKernel(attention)
    """
    if not isinstance(spec, Program):
        raise AttncompError(located(
            f"ac.compile expects a Program (from ac.attention, ac.cascade or attncomp.variants), "
            f"got {type(spec).__name__}", user_location()))
    if backend not in BACKENDS:
        raise AttncompError(located(f"{spec.name}: unknown backend {backend!r}; available: {', '.join(BACKENDS)}",
                                    user_location()))
    return BACKENDS[backend](spec, **options)
