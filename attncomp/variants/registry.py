"""The registry of built-in variants: name, VARIANTS.md group, one-line summary, factory,
default arguments, and example runtime tensors so every variant runs out of the box."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import AttncompError, api_boundary
from ..ir.arguments import LIMIT  # sizes, windows and counts: int32, as kernels take them
from ..ir.program import Program

# Sizes of index letters other than b, h, m, n when making example inputs.
EXTRA_LETTER_SIZES = {"c": 32}


@dataclass(frozen=True)
class Example:
    """Everything needed to run a variant: sizes and its runtime tensors (seeded)."""

    batch: int = 2
    heads: int = 4
    kv_heads: int | None = None
    q_len: int = 100
    kv_len: int = 100
    head_dim: int = 16


@dataclass(frozen=True)
class Variant:
    name: str
    group: str
    summary: str
    factory: Callable[..., Program]
    defaults: dict = field(default_factory=dict)
    tensors: Callable[[Example, torch.Generator, dict], dict] | None = None
    length: Callable[[dict], int] | None = None  # token count fixed by the arguments (grids)
    cross: bool = False                           # meaningful with q_len != kv_len
    kv_groups: int = 1                            # examples use heads // kv_groups K/V heads

    def arguments(self, **overrides) -> dict:
        params = inspect.signature(self.factory).parameters
        unknown = sorted(set(overrides) - set(params))
        if unknown:
            raise AttncompError(f"{self.name}: unknown argument(s) {unknown}; it takes {list(params)}")
        return {**self.defaults, **overrides}

    def build(self, **overrides) -> Program:
        """The Program with the registry defaults, updated by ``overrides``."""
        return self.factory(**self.arguments(**overrides))

    def example(self, q_len: int = 100, kv_len: int | None = None, batch: int = 2, heads: int = 4,
                head_dim: int = 16, **overrides) -> Example:
        """Problem sizes for running this variant (grids fix the length to their token count)."""
        if self.length is not None:
            q_len = kv_len = self.length(self.arguments(**overrides))
        kv_len = kv_len if (kv_len is not None and self.cross) else q_len
        return Example(batch, heads, max(1, heads // self.kv_groups), q_len, kv_len, head_dim)

    def example_tensors(self, ex: Example, seed: int = 0, **overrides) -> dict[str, torch.Tensor]:
        """Seeded runtime tensors (document ids, slopes, tables) for a run at sizes ``ex``."""
        gen = torch.Generator().manual_seed(seed)
        return self.tensors(ex, gen, self.arguments(**overrides)) if self.tensors else {}


def example_inputs(program: Program, ex: Example, dtype=torch.float32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs for ``program`` by index letter: b=batch, h=heads (K/V-side inputs get
    kv_heads), m=q_len, n=kv_len, d/e=head_dim, c=32."""
    gen = torch.Generator().manual_seed(seed)
    sizes = {"b": ex.batch, "h": ex.heads, "m": ex.q_len, "n": ex.kv_len, "d": ex.head_dim, "e": ex.head_dim,
             **EXTRA_LETTER_SIZES}
    out = {}
    for decl in program.inputs:
        shape = [sizes[x] for x in decl.letters]
        if "h" in decl.letters and "n" in decl.letters and ex.kv_heads:
            shape[decl.letters.index("h")] = ex.kv_heads
        out[decl.name] = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    return out


REGISTRY: dict[str, Variant] = {}


def _check_argument(variant: str, parameter: inspect.Parameter, value) -> None:
    """A variant argument of the kind its annotation (or default) says, or an AttncompError."""
    kind = parameter.annotation
    if kind is inspect.Parameter.empty:  # grid factories: an int or one per dimension
        kind = "tuple" if isinstance(parameter.default, (int, tuple)) else None
    is_int = lambda x: isinstance(x, int) and not isinstance(x, bool) and -LIMIT <= x < LIMIT
    ok = {"int": is_int,
          "float": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x),
          "bool": lambda x: isinstance(x, bool),
          "str": lambda x: isinstance(x, str),
          "tuple": lambda x: is_int(x) or (isinstance(x, (tuple, list)) and all(map(is_int, x))),
          "torch.Tensor | None": lambda x: x is None or isinstance(x, torch.Tensor)}.get(kind)
    if ok is not None and not ok(value):
        wanted = {"int": f"an int in -2**31..2**31-1", "float": "a finite number", "bool": "True or False",
                  "str": "a string", "tuple": "an int or a tuple of ints", "torch.Tensor | None": "a tensor or None"}
        raise AttncompError(f"argument {parameter.name} must be {wanted[kind]}, got {value!r}", variant=variant)


def checked_factory(name: str, factory: Callable[..., Program]) -> Callable[..., Program]:
    """``factory`` with its arguments checked against their annotations first: a wrong
    kind of value is an AttncompError naming the argument, not an error deep inside."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for arg, value in bound.arguments.items():
            _check_argument(name, signature.parameters[arg], value)
        return factory(*args, **kwargs)
    return api_boundary(build)


def register(name: str, group: str, summary: str, **options):
    """Decorator adding a factory to the registry under ``name`` (its arguments checked,
    see :func:`checked_factory`)."""
    def deco(factory):
        checked = checked_factory(name, factory)
        REGISTRY[name] = Variant(name, group, summary, checked, **options)
        return checked
    return deco


def get(name: str, **overrides) -> Program:
    """A built-in variant's Program by name.

    >>> from attncomp.variants import get
    >>> print(get("sliding_window", window=64).mask)
    (m >= n) & (m - n < window)
    """
    if name not in REGISTRY:
        raise AttncompError(f"unknown variant {name!r}; `attncomp list` shows the built-in ones")
    return REGISTRY[name].build(**overrides)
