"""Binding a kernel call's tensors to a Program, with every mismatch explained.

Shared by all backends: positional arguments bind to the Program's inputs in order
(``Q, K, V`` for softmax attention), keywords to inputs or runtime tensors by name;
captured tensors are the defaults. Index-letter sizes come from the inputs' shapes; an
input with fewer heads than the query (``h`` smaller and dividing it) is grouped-query
attention: query head ``h`` reads head ``h // (H / H_kv)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ShapeError, located, user_location
from ..ir import expr as E
from ..ir.program import Program


@dataclass
class Bound:
    """A call's tensors, checked: inputs by name, letter sizes, GQA group per input,
    runtime tensors (on the inputs' device) and resolved parameter values."""

    inputs: dict[str, torch.Tensor]
    sizes: dict[str, int]
    groups: dict[str, int]
    tensors: dict[str, torch.Tensor]
    params: dict[str, int | float]
    order: tuple[str, ...]

    @property
    def device(self) -> torch.device:
        return next(iter(self.inputs.values())).device


def _shape_error(program: Program, message: str) -> ShapeError:
    return ShapeError(located(f"{program.name}: {message}", user_location()))


def _check_runtime(program: Program, decl: E.TensorDecl, t, sizes: dict[str, int], named: dict[str, tuple[int, str]]) -> None:
    if not isinstance(t, torch.Tensor):
        raise _shape_error(program, f"runtime tensor {decl.name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != len(decl.dims):
        raise _shape_error(program, f"runtime tensor {decl} needs {len(decl.dims)} dimension(s), got shape {tuple(t.shape)}")
    ok = {E.BOOL: t.dtype == torch.bool, E.FLOAT: t.is_floating_point(),
          E.INT: not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool}[decl.kind]
    if not ok:
        raise _shape_error(program, f"runtime tensor {decl} must hold {decl.kind} values, got {t.dtype}")
    for pos, (dim, size) in enumerate(zip(decl.dims, t.shape)):
        if isinstance(dim, int):
            expected, why = dim, "its declared size"
        elif dim in ("B", "H"):
            expected, why = sizes["b" if dim == "B" else "h"], ("the batch size" if dim == "B" else "the number of query heads")
        elif dim in named:
            expected, why = named[dim][0], f"dimension {dim} of {named[dim][1]}"
        else:
            named[dim] = (size, decl.name)
            continue
        if size != expected:
            raise _shape_error(program, f"runtime tensor {decl} has size {size} in dimension {pos} ({dim}), "
                                        f"but {why} is {expected}")


def bind(program: Program, args: tuple, kwargs: dict) -> Bound:
    """Check and bind ``kernel(*args, **kwargs)`` to ``program``."""
    names = [i.name for i in program.inputs]
    if len(args) > len(names):
        raise _shape_error(program, f"takes {len(names)} input tensor(s) ({', '.join(names)}), got {len(args)} positional arguments")
    given = dict(zip(names, args))
    runtime = dict(program.bindings)
    for key, value in kwargs.items():
        if key in names:
            if key in given:
                raise _shape_error(program, f"input {key} is given both positionally and by name")
            given[key] = value
        elif key in program.tensors:
            runtime[key] = value
        else:
            raise _shape_error(program, f"unexpected tensor {key!r}; inputs are {names}, runtime tensors "
                                        f"{list(program.tensors) or 'none'}")
    missing = [n for n in names if n not in given]
    if missing:
        raise _shape_error(program, f"missing input(s) {missing}; call kernel({', '.join(n.lower() for n in names)}) "
                                    f"or pass them by name")

    sizes: dict[str, int] = {}
    origin: dict[str, str] = {}
    heads: dict[str, int] = {}
    for decl in program.inputs:
        t = given[decl.name]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise _shape_error(program, f"input {decl.name} must be a floating-point torch.Tensor, got "
                                        f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
        if t.dim() != len(decl.letters):
            raise _shape_error(program, f"input {decl} needs {len(decl.letters)} dimensions [{','.join(decl.letters)}], "
                                        f"got shape {tuple(t.shape)}")
        for pos, (letter, size) in enumerate(zip(decl.letters, t.shape)):
            if letter == "h":
                heads[decl.name] = size
            elif letter in sizes and sizes[letter] != size:
                raise _shape_error(program, f"index letter {letter} has size {sizes[letter]} in {origin[letter]} but "
                                            f"{size} in {decl.name} (dimension {pos}, shape {tuple(t.shape)})")
            else:
                sizes.setdefault(letter, size)
                origin.setdefault(letter, f"{decl.name} (shape {tuple(t.shape)})")
    devices = {t.device for t in given.values()}
    if len(devices) > 1:
        raise _shape_error(program, f"inputs are on different devices: {sorted(map(str, devices))}")
    groups = {n: 1 for n in names}
    if heads:
        h = max(heads.values())
        for n, hk in heads.items():
            if h % hk:
                raise _shape_error(program, f"{n} has {hk} heads, which does not divide the {h} heads of the other "
                                            f"inputs (grouped-query attention needs H % H_kv == 0)")
            groups[n] = h // hk
        sizes["h"] = h

    named: dict[str, tuple[int, str]] = {}
    tensors = {}
    device = next(iter(given.values())).device
    for decl in program.tensors.values():
        if decl.name not in runtime:
            dims = ", ".join(map(str, decl.dims))
            raise _shape_error(program, f"needs runtime tensor {decl.name}[{dims}] ({decl.dtype}): "
                                        f"call kernel(..., {decl.name}=...)")
        _check_runtime(program, decl, runtime[decl.name], sizes, named)
        tensors[decl.name] = runtime[decl.name].to(device)

    params = {k: v for k, v in program.params.items()}
    if params.get("scale", 0) is None:
        if "d" not in sizes:
            raise _shape_error(program, "scale defaults to 1/sqrt(d) but no input has the head-dim letter d; "
                                        "give scale a value")
        params["scale"] = 1.0 / math.sqrt(sizes["d"])
    order = tuple(dict.fromkeys(x for i in program.inputs for x in i.letters))
    return Bound({n: given[n] for n in names}, sizes, groups, tensors, params, order)
