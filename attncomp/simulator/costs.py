"""Per-tile work of a Program, derived from its equations (not hard-coded per variant).

For one (query block x key block) tile of ``BM x BN`` pairs:

- tensor-core FLOPs: every equation that contracts over indices while carrying both the
  query letter ``m`` and key letter ``n`` in its product does ``2 * (product of the sizes
  of all its letters)`` FLOPs (``S = Q K``: ``2 BM BN D``; ``O = P V``: ``2 BM BN Dv``;
  differential attention has two of each);
- special-function results (exp, log, tanh, sigmoid...) and ALU operations of the maps,
  counted by where they vary: an op on ``[m, n]`` costs ``BM * BN``, one on ``[m]`` only
  ``BM``, on ``[n]`` only ``BN``; a softmax is one exp per element plus a running max, a
  subtraction and a sum, and a per-row rescale;
- the mask, on partial tiles only: its ops counted the same way plus one select per element;
- bytes: the K/V-side tiles read per tile; the Q-side tile and the output per query block.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import expr as E
from ..ir.ops import Op
from ..ir.program import Program

FREE, ALU = (0, 0), (0, 1)
# Work per element of each op: (special-function results, ALU instructions). Integer
# division and modulo by a constant compile to a multiply-high, shifts and (for Python's
# floor semantics) sign fix-ups; tanh and sigmoid take an exp and a reciprocal.
WORK = {
    Op.VAR: FREE, Op.CONST: FREE, Op.PARAM: FREE, Op.REF: FREE,
    Op.LOAD: (0, 2),  # address arithmetic and the load itself
    Op.ADD: ALU, Op.SUB: ALU, Op.MUL: ALU, Op.TRUEDIV: (0, 4), Op.FLOORDIV: (0, 8), Op.MOD: (0, 8),
    Op.POW: (0, 4), Op.MINIMUM: ALU, Op.MAXIMUM: ALU,
    Op.LT: ALU, Op.LE: ALU, Op.GT: ALU, Op.GE: ALU, Op.EQ: ALU, Op.NE: ALU,
    Op.AND: ALU, Op.OR: ALU, Op.XOR: ALU, Op.LSHIFT: ALU, Op.RSHIFT: ALU,
    Op.NEG: ALU, Op.ABS: ALU, Op.INVERT: ALU,
    Op.EXP: (1, 0), Op.EXP2: (1, 0), Op.LOG: (1, 0), Op.LOG2: (1, 0), Op.SQRT: (1, 0), Op.TANH: (2, 0),
    Op.SIGMOID: (2, 0), Op.RELU: ALU, Op.ELU: (1, 0), Op.FLOOR: ALU, Op.CEIL: ALU,
    Op.SOFTPLUS: (2, 3), Op.LOGSIGMOID: (2, 3),  # exp and log of -|x|; abs, max and add
    Op.FLOAT: ALU, Op.INT: ALU, Op.WHERE: ALU,
    Op.SOFTMAX: (1, 3),  # an exp per element; running max, subtract, sum (online softmax)
    Op.REDUCE_MAX: ALU, Op.REDUCE_SUM: ALU,
}
SOFTMAX_ROW_SFU = 1  # exp of the max correction per row per tile


@dataclass(frozen=True)
class TileWork:
    """Work of one tile and of one query block (CTA), from a Program and sizes."""

    tensor_flops: float   # per tile
    sfu: float            # per tile
    alu: float            # per tile, unmasked
    mask_alu: float       # per partial tile, extra
    mask_sfu: float       # per partial tile, extra
    kv_bytes: float       # per tile
    q_bytes: float        # per query block (prologue)
    out_bytes: float      # per query block (epilogue)
    epilogue_flops: float  # per query block: contractions without n (gates)
    softmax_terms: int    # online softmaxes per tile (0 for sigmoid / linear attention)
    mask_ops: int         # ops in the mask expression, for reports


def _weighted_ops(expr: E.Expr, sizes: dict, skip: frozenset = frozenset(), hoisted: bool = True) -> tuple[float, float]:
    """(SFU, ALU) work per tile of the nodes of ``expr`` that vary with the key index ``n``
    (query-only work is done once per query block, not per tile), by broadcast class;
    ``hoisted=False`` counts every node once per element (a kernel that does not hoist)."""
    sfu = alu = 0.0
    for node in E.walk(expr):
        node_sfu, node_alu = WORK[node.op]
        if (node_sfu, node_alu) == FREE or node in skip:
            continue
        letters = E.letters_of(node) | ({node.arg} if node.op in E.REDUCTIONS else set())
        if "n" not in letters:
            continue
        count = 1.0
        for x in (letters - {"b", "h"}) if hoisted else {"m", "n"}:
            count *= sizes.get(x, 1)
        sfu += node_sfu * count + (SOFTMAX_ROW_SFU * sizes["m"] if node.op == Op.SOFTMAX else 0)
        alu += node_alu * count
    return sfu, alu


def _top_product(expr: E.Expr) -> frozenset:
    """The multiplication nodes of a contraction's top-level product: tensor-core work."""
    out, todo = set(), [expr]
    while todo:
        node = todo.pop()
        if node.op == "mul":
            out.add(node)
            todo += list(node.src)
    return frozenset(out)


def tile_work(program: Program, bm: int, bn: int, head_dim: int, value_dim: int | None = None,
              extra_sizes: dict | None = None, dtype_bytes: int = 2, hoisted: bool = True) -> TileWork:
    """The per-tile and per-query-block work of ``program`` with ``BM x BN`` tiles.

    >>> import attncomp as ac
    >>> w = tile_work(ac.variants.causal(), 128, 128, 128)
    >>> w.tensor_flops == 4 * 128 * 128 * 128, w.softmax_terms
    (True, 1)
    """
    value_dim = value_dim or head_dim
    sizes = {"m": bm, "n": bn, "d": head_dim, "e": value_dim, "c": head_dim, **(extra_sizes or {})}
    tensor = epilogue = sfu = alu = 0.0
    softmaxes = 0
    for eqn in program.eqns:
        rhs = eqn.rhs
        letters = E.letters_of(rhs)
        skip = frozenset()
        if letters - set(eqn.letters):  # a contraction: its product runs on the tensor cores
            skip = _top_product(rhs)
            flops = 2.0
            for x in letters - {"b", "h"}:
                flops *= sizes.get(x, 1)
            if {"m", "n"} <= letters:
                tensor += flops
            elif "n" not in letters:
                epilogue += flops
        s, a = _weighted_ops(rhs, sizes, skip)
        sfu, alu = sfu + s, alu + a
        softmaxes += sum(1 for n in E.walk(rhs) if n.op == "softmax")
    mask_sfu = mask_alu = 0.0
    mask_nodes = 0
    if program.mask is not None:
        mask_sfu, mask_alu = _weighted_ops(program.mask, sizes, hoisted=hoisted)
        mask_alu += bm * bn  # applying it: one select per element
        mask_nodes = sum(1 for n in E.walk(program.mask) if n.src)
    kv = q = 0.0
    for decl in program.inputs:
        elems = 1.0
        for x in decl.letters:
            if x not in ("b", "h", "m", "n"):
                elems *= sizes.get(x, 1)
        if "n" in decl.letters:
            kv += elems * bn * dtype_bytes
        elif "m" in decl.letters:
            q += elems * bm * dtype_bytes
    return TileWork(tensor, sfu, alu, mask_alu, mask_sfu, kv, q, bm * value_dim * dtype_bytes, epilogue, softmaxes,
                    mask_nodes)
