"""Runtime-tensor loads stay inside their tensors: proven by intervals, or checked once.

Every load a Program makes (``doc[b, q_idx]`` in a mask, ``bias[h, q_idx - kv_idx]`` in a
score) is checked before any backend runs, so an index out of range is the same
:class:`~attncomp.errors.AttncompError` on every backend, never a wrapped negative index
(torch indexing, FlexAttention) or a silent zero (a masked Triton load). The interval
evaluator bounds each index over the whole problem, with per-block min/max summaries of
the tensors it reads through (see :mod:`.summaries`); an index it cannot bound inside the
tensor is evaluated point by point when the problem is small enough (the evaluator then
names the values it takes), and refused otherwise.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import AttncompError
from .. import expr as E
from ..evaluate import Env, evaluate
from .intervals import IntervalEvaluator
from .summaries import RangeTable
from .tiles import Grid, Rects, group_shape

DENSE_CHECK_LIMIT = 1 << 24  # points: below this, an index the intervals cannot bound is checked exactly


def program_loads(program) -> list[E.Expr]:
    """The distinct load nodes of ``program`` (mask and equations), inner loads first."""
    exprs = ([program.mask] if program.mask is not None else []) + [eqn.rhs for eqn in program.eqns]
    return list(dict.fromkeys(n for e in exprs for n in E.walk(e) if n.op == "load"))


def check_loads(program, q_len: int, kv_len: int, batch: int, heads: int, tensors: dict, params: dict,
                loads: list[E.Expr] | None = None, load_fn=None) -> None:
    """Raise an AttncompError naming the index and its values if a load of ``program`` can
    read outside its tensor for some ``(b, h, q_idx, kv_idx)`` of the problem.

    >>> import torch, attncomp as ac
    >>> bias = torch.zeros(256)
    >>> spec = ac.attention(score=lambda s, b, h, q_idx, kv_idx: s + bias[q_idx - kv_idx], name="rel")
    >>> check_loads(spec, 128, 128, 1, 1, {"bias": bias}, {})
    Traceback (most recent call last):
    ...
    attncomp.errors.AttncompError: rel: index 0 of bias is `m - n`, which takes values -127..127, outside 0..255 (shape (256,))
      hint: Clamp it or make the tensor larger
    """
    loads = program_loads(program) if loads is None else loads
    if not loads or 0 in (q_len, kv_len, batch, heads):
        return
    letters = set().union(*(E.letters_of(s) for n in loads for s in n.src))
    shape = group_shape(letters, batch, heads)
    grid = Grid.of_groups(q_len, kv_len, q_len, kv_len, shape)
    G = len(grid.group_b)
    if load_fn is None:
        # only tensors read inside an index need summaries (``bias[doc[b, q_idx]]``)
        inner = {n.arg.name for node in loads for s in node.src for n in E.walk(s) if n.op == "load"}
        tables = {name: RangeTable(tensors[name], 1) for name in inner}
        load_fn = lambda decl, ranges: tables[decl.name].query(ranges)
    root = Rects(np.arange(G), np.zeros(G, np.int64), np.ones(G, np.int64), np.zeros(G, np.int64), np.ones(G, np.int64))
    ev = IntervalEvaluator(root.box(grid), params, load_fn)
    for node in loads:
        shape_t = tensors[node.arg.name].shape
        for pos, sub in enumerate(node.src):
            lo, hi = ev.rng(sub)
            if lo.min() >= 0 and hi.max() <= shape_t[pos] - 1:
                continue
            if G * q_len * kv_len <= DENSE_CHECK_LIMIT:
                _evaluate_densely(program, node, shape, q_len, kv_len, tensors, params)
                break
            raise AttncompError(f"index {pos} of {node.arg.name} is `{sub}`, which may take values "
                                f"{lo.min():.0f}..{hi.max():.0f} outside 0..{shape_t[pos] - 1}",
                                hint="Clamp it so it never reads outside the tensor", variant=program.name)


def _evaluate_densely(program, load: E.Expr, shape: tuple[int, int], q_len: int, kv_len: int, tensors: dict,
                      params: dict) -> None:
    """Evaluate ``load`` at every point: the evaluator raises on an index out of range."""
    index = {"b": torch.arange(shape[0]), "h": torch.arange(shape[1]), "m": torch.arange(q_len),
             "n": torch.arange(kv_len)}
    env = Env(order=E.MASK_LETTERS, index=index, tensors={k: t.detach().cpu() for k, t in tensors.items()},
              params={k: v for k, v in params.items() if v is not None}, variant=program.name)
    evaluate(load, env)
