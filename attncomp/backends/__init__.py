"""Backends: each turns a Program into a kernel callable ``kernel(*inputs, **tensors)``.

- ``reference``: dense torch evaluation of any Program (the oracle).
- ``triton``: generated Triton kernels for masks, score mods and cascades.
- ``flex``: softmax attention through PyTorch's FlexAttention with generated mods and an
  analytic BlockMask.

Each registers itself in :data:`.registry.BACKENDS` (see :mod:`.registry`).
"""

from __future__ import annotations

import inspect

from ..errors import AttncompError, api_boundary
from ..ir.plan import Plan, plan_of
from ..ir.program import Program

# isort: off
# importing a backend registers it; this order is the order the report and the CLI list them
from .reference import ReferenceKernel
from .triton import TritonKernel
from .flex import FlexKernel
# isort: on
from .registry import BACKENDS, Backend, Kernel, register

__all__ = ["BACKENDS", "Backend", "FlexKernel", "Kernel", "ReferenceKernel", "TritonKernel", "compile", "register"]


@api_boundary
def compile(spec: Program | Plan, backend: str = "reference", **options) -> Kernel:
    """Compile ``spec`` for ``backend``; the kernel is called as ``kernel(q, k, v, **tensors)``.

    >>> import attncomp as ac
    >>> ac.compile(ac.attention(), backend="reference")
    ReferenceKernel(attention)
    """
    if not isinstance(spec, (Program, Plan)):
        raise AttncompError(f"ac.compile expects a Program (from ac.attention, ac.cascade or attncomp.variants), "
                            f"got {type(spec).__name__}")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise AttncompError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}", variant=spec.name)
    kernel = BACKENDS[backend].kernel
    accepted = [p for p in inspect.signature(kernel.__init__).parameters if p not in ("self", "spec")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise AttncompError(f"the {backend} backend takes no option(s) {', '.join(unknown)}; its options are "
                            f"{', '.join(accepted) or 'none'}", variant=spec.name)
    return BACKENDS[backend].compile(plan_of(spec), **options)
