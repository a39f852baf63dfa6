"""NSA's group-centric loading (Yuan et al., 2025, section 3.4): where one selection is shared
by the query heads of a KV group, a tile's rows are (token, head) pairs of one KV head, so
each key block is loaded once for the whole group and the tile visits the union of fewer
tokens' choices.

It is a change of rows, not a new kernel: the query rows ``r = m * G + g`` of KV head ``hk``
hold query head ``h = hk * G + g`` of token ``m``, so the Program on those rows reads
``m = r // G`` and ``h = hk * G + r % G`` wherever its mask, score mod and sink read them; the
generated kernel of that Program runs on Q reshaped to ``[B, H_kv, M * G, D]``.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ...ir import expr as E
from ...ir.program import Program
from ...ir.softmax import match_softmax, softmax_program


def fold_heads(program: Program, group: int) -> Program | None:
    """``program`` on rows of (token, head) pairs of each KV head (see the module docstring),
    or None where it is not single-softmax attention."""
    parts, _ = match_softmax(program)
    if parts is None:
        return None
    m, h = E.var("m"), E.var("h")
    mapping = {m: E.binary("floordiv", m, E.const(group)),
               h: E.binary("add", E.binary("mul", h, E.const(group)), E.binary("mod", m, E.const(group)))}
    fold = lambda e: E.substitute(e, mapping) if e is not None else None  # noqa: E731
    folded = replace(parts, mask=fold(parts.mask), score=fold(parts.score), sink=fold(parts.sink))
    return softmax_program(folded, f"{program.name}_grouped{group}", program.bindings, program.source,
                           program.selection)


def rows_of(q: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """``q [B, H, M, D]`` as ``[B, H_kv, M * G, D]``, row ``m * G + g`` = head ``hk * G + g``."""
    B, H, M, D = q.shape
    return q.view(B, kv_heads, H // kv_heads, M, D).transpose(2, 3).reshape(B, kv_heads, M * (H // kv_heads), D)


def heads_of(out: torch.Tensor, heads: int) -> torch.Tensor:
    """The inverse of :func:`rows_of` for the output ``[B, H_kv, M * G, Dv]``."""
    B, Hk, R, Dv = out.shape
    G = heads // Hk
    return out.view(B, Hk, R // G, G, Dv).transpose(2, 3).reshape(B, heads, R // G, Dv)
