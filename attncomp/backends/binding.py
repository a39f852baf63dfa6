"""Binding a kernel call's tensors to a Program, with every mismatch explained.

Shared by all backends: positional arguments bind to the Program's inputs in order
(``Q, K, V`` for softmax attention), keywords to inputs or runtime tensors by name;
captured tensors are the defaults. Index-letter sizes come from the inputs' shapes; an
input with fewer heads than the query (``h`` smaller and dividing it) is grouped-query
attention: query head ``h`` reads head ``h // (H / H_kv)``. Inputs share one dtype and
one device with values (not ``meta``), as torch's attention functions require.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ShapeError
from ..ir.program import Program
from ..ir.runtime import check_runtime_tensors


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
    return ShapeError(message, variant=program.name)


def bind(program: Program, args: tuple, kwargs: dict) -> Bound:
    """Check and bind ``kernel(*args, **kwargs)`` to ``program``."""
    names = [i.name for i in program.inputs]
    if len(args) > len(names):
        raise _shape_error(program, f"takes {len(names)} input tensor(s) ({', '.join(names)}), got {len(args)} positional arguments")
    given = dict(zip(names, args))
    runtime = {}
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
    if next(iter(devices)).type == "meta":
        raise _shape_error(program, "inputs are on the meta device, which holds no values to attend over")
    dtypes = {n: given[n].dtype for n in names}
    if len(set(dtypes.values())) > 1:
        raise _shape_error(program, f"inputs have different dtypes ({', '.join(f'{n} {d}' for n, d in dtypes.items())}); "
                                    f"cast them to one dtype, as torch's scaled_dot_product_attention requires")
    groups = {n: 1 for n in names}
    if heads:
        # the query-side inputs (those indexed by m) set the head count; key-side inputs
        # may have fewer heads, shared by groups of query heads (GQA), never more
        queries = {heads[n] for n in heads if "m" in program.input(n).letters} or {max(heads.values())}
        if len(queries) > 1:
            raise _shape_error(program, f"query-side inputs have different numbers of heads: "
                                        f"{ {n: hk for n, hk in heads.items() if 'm' in program.input(n).letters} }")
        h = queries.pop()
        for n, hk in heads.items():
            if hk != h and (hk == 0 or h % hk):
                raise _shape_error(program, f"{n} has {hk} heads, which does not divide the {h} query heads "
                                            f"(grouped-query attention needs H_q % H_kv == 0 and H_kv <= H_q)")
            groups[n] = h // hk if hk else 1
        sizes["h"] = h

    checked = check_runtime_tensors(program, runtime, sizes)
    device = next(iter(given.values())).device
    tensors = {k: v.to(device) for k, v in checked.items()}

    params = {k: v for k, v in program.params.items()}
    if params.get("scale", 0) is None:
        if "d" not in sizes:
            raise _shape_error(program, "scale defaults to 1/sqrt(d) but no input has the head-dim letter d; "
                                        "give scale a value")
        params["scale"] = 1.0 / math.sqrt(sizes["d"])
    order = tuple(dict.fromkeys(x for i in program.inputs for x in i.letters))
    return Bound({n: given[n] for n in names}, sizes, groups, tensors, params, order)
