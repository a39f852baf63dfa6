"""Checking runtime tensors (document ids, slopes, tables) against their declarations."""

from __future__ import annotations

import torch

from ..errors import ShapeError
from . import expr as E


def check_runtime_tensors(program, given: dict, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """The runtime tensors ``program`` reads, from ``given`` or its captured bindings,
    checked for rank, dtype kind and sizes (``B`` = ``sizes["b"]``, ``H`` = ``sizes["h"]``,
    other named dims consistent across tensors, integers exact)."""
    def fail(message):
        return ShapeError(message, variant=program.name)

    available = dict(program.bindings) | dict(given)
    named: dict[str, tuple[int, str]] = {}
    out = {}
    for decl in program.tensors.values():
        if decl.name not in available:
            raise fail(f"needs runtime tensor {decl.name}[{', '.join(map(str, decl.dims))}] ({decl.dtype}): "
                       f"pass {decl.name}=...")
        t = available[decl.name]
        if not isinstance(t, torch.Tensor):
            raise fail(f"runtime tensor {decl.name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != len(decl.dims):
            raise fail(f"runtime tensor {decl} needs {len(decl.dims)} dimension(s), got shape {tuple(t.shape)}")
        ok = {E.BOOL: t.dtype == torch.bool, E.FLOAT: t.is_floating_point(),
              E.INT: not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool}[decl.kind]
        if not ok:
            raise fail(f"runtime tensor {decl} must hold {decl.kind} values, got {t.dtype}")
        for pos, (dim, size) in enumerate(zip(decl.dims, t.shape)):
            if isinstance(dim, int):
                expected, why = dim, "its declared size"
            elif dim in ("B", "H") and ("b" if dim == "B" else "h") in sizes:
                expected = sizes["b" if dim == "B" else "h"]
                why = "the batch size" if dim == "B" else "the number of query heads"
            elif dim in named:
                expected, why = named[dim][0], f"dimension {dim} of {named[dim][1]}"
            else:
                named[dim] = (size, decl.name)
                continue
            if size != expected:
                raise fail(f"runtime tensor {decl} has size {size} in dimension {pos} ({dim}), but {why} is {expected}")
        out[decl.name] = t
    return out
