"""The pipeline: a spec is optimized once into a frozen :class:`Plan` that analysis, the
backends, the simulator and the report all read.

A Plan holds the spec as the user wrote it (the reference backend evaluates it: the
oracle must not depend on the passes), and two optimized forms, each derived on first use:

- ``program``: every pass with parameters folded into constants — the mask the sparsity
  analysis classifies and the work the simulator costs;
- ``named``: the same passes with parameters kept as names — what generated kernels print
  (``q_idx - kv_idx < WINDOW``) and what a call binds its tensors to.

Layouts are cached on the plan by problem (sizes, block, batch, heads, and the runtime
tensors by identity and version), so a report, a simulation and a kernel call at the same
sizes classify the tiles once. :func:`plan_of` caches plans per spec.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .passes import optimize
from .program import Program

PLANS = 64    # specs planned per process before the least recently used is dropped
LAYOUTS = 16  # layouts per plan: a sweep over sizes or tensors keeps only the recent ones


class Memo:
    """A small LRU. An entry also holds the objects its key names by ``id`` (runtime
    tensors), so no other object can take over such an id while the entry lives, and a
    copy of their values: an edit the version counter does not see (through ``t.data`` or
    ``t.numpy()``) still makes the entry stale, at the cost of one comparison of the
    runtime tensors (``O(L)`` values, against the ``O(L^2)`` work they describe)."""

    def __init__(self, size: int):
        self.size = size
        self.entries: OrderedDict = OrderedDict()
        self.builds = 0

    def get(self, key, build: Callable[[], Any], hold: tuple = ()) -> Any:
        if key in self.entries:
            value, held, copies = self.entries[key]
            if all(_unchanged(t, c) for t, c in zip(held, copies)):
                self.entries.move_to_end(key)
                return value
            del self.entries[key]
        value = build()
        self.builds += 1
        self.entries[key] = (value, hold, tuple(_copy(t) for t in hold))
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self.entries.clear()


def _copy(value):
    return value.detach().clone() if isinstance(value, torch.Tensor) else None


def _unchanged(value, copy) -> bool:
    return copy is None or (value.shape == copy.shape and bool(torch.equal(value.detach(), copy)))


def tensor_key(tensors: dict) -> tuple:
    """Runtime tensors by name, identity, version counter and shape: an in-place change
    (``doc[:, 300:] = 2``) or another tensor with equal values is a new key."""
    return tuple((name, id(t), getattr(t, "_version", None), tuple(getattr(t, "shape", ())))
                 for name, t in sorted(tensors.items()))


@dataclass(frozen=True, eq=False)
class Plan:
    """``spec`` optimized once; see the module docstring.

    >>> import attncomp as ac
    >>> spec = ac.variants.sliding_window(256)
    >>> p = plan_of(spec)
    >>> print(p.program.mask)
    (m >= n) & (m - n < 256)
    >>> print(p.named.mask)
    (m >= n) & (m - n < window)
    >>> plan_of(spec) is p, plan_of(spec.with_params(window=512)) is p
    (True, False)
    """

    spec: Program
    layouts: Memo = field(default_factory=lambda: Memo(LAYOUTS), repr=False)

    @functools.cached_property
    def program(self) -> Program:
        return self._optimized(fold_params=True)

    @functools.cached_property
    def named(self) -> Program:
        return self._optimized(fold_params=False)

    def _optimized(self, fold_params: bool) -> Program:
        # the one place the passes run: everything downstream reads this plan
        return optimize(self.spec, fold_params=fold_params)

    def layout(self, key: tuple, tensors: dict, build: Callable[[], Any]) -> Any:
        """The layout for ``key`` (the problem's sizes) and these runtime tensors, built once."""
        used = {name: t for name, t in (dict(self.spec.bindings) | dict(tensors)).items() if name in self.spec.tensors}
        return self.layouts.get((key, tensor_key(used)), build, hold=tuple(used.values()))

    @property
    def name(self) -> str:
        return self.spec.name


_PLANS = Memo(PLANS)


def plan_of(spec: Program | Plan) -> Plan:
    """The plan of ``spec`` (a Plan is its own). Equal specs share a plan only when their
    name, source location and captured tensors are also the same: those do not take part in
    Program equality, but messages and default tensors come from them."""
    if isinstance(spec, Plan):
        return spec
    bindings = tuple((name, id(t)) for name, t in spec.bindings)
    return _PLANS.get((spec, spec.name, spec.source, bindings), lambda: Plan(spec))


def clear_plans() -> None:
    """Forget every plan (and so every cached layout): the next call of any spec runs the
    passes and the analysis again, as in a fresh process.

    >>> import attncomp as ac
    >>> spec = ac.variants.causal()
    >>> p = plan_of(spec)
    >>> clear_plans()
    >>> plan_of(spec) is p
    False
    """
    _PLANS.clear()
