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

The work follows the kernel plan the Triton backend generates from (``ir.lowering``):
a *linear* term (``phi(Q) phi(K)^T V``, no normalizer over ``n``) runs chunked, as
Lightning Attention-2 and flash-linear-attention's chunk kernels do: a first pass folds each
key block into a state ``phi(K_j)^T V_j`` and a prefix sum over blocks, so a run of full
tiles costs two state loads and the query block one ``phi(Q) S`` product; only partial
(diagonal) tiles keep the quadratic form. Work grows linearly with the length.
A Program with no key loop at all (no equation over both ``m`` and ``n``: Efficient
Attention's ``phi(Q) (phi(K)^T V)``) is costed as the passes the reference backend runs
(:func:`einsum_passes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import UnsupportedError
from ..ir import expr as E
from ..ir.lowering import lower
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
class Chunked:
    """The chunked form of a kernel's linear terms (all per (batch, KV head) unless noted)."""

    key_block_flops: float   # per key block: phi(K_j)^T V_j (and sum phi(K_j) for a normalizer)
    key_block_ops: tuple     # per key block: (SFU, ALU) work of the feature maps phi(K_j)
    row_ops: tuple           # per query block: (SFU, ALU) work of the feature maps phi(Q_i)
    kv_block_bytes: float    # per key block: K and V read
    state_elems: int         # elements of one key block's states, all linear terms
    row_flops: float         # per query block: phi(Q) times the state
    full_tensor_flops: float  # per full tile: what the other (softmax, weighted) terms still do
    visits_full: bool        # whether any term still walks the full tiles
    prefix_bytes: int = 8    # per prefix element: float64 where some run starts past block 0 (its
    #                          P[hi] - P[lo] would cancel in float32), else 4 (see :meth:`narrow`)

    @property
    def key_block_bytes(self) -> float:
        """Per key block: K and V read; its states zeroed, written, then read and written
        again by the prefix sum."""
        return self.kv_block_bytes + 4 * self.state_elems * self.prefix_bytes

    @property
    def run_bytes(self) -> float:
        """Per run of full tiles in a query block: two prefix states loaded."""
        return 2 * self.state_elems * self.prefix_bytes

    def narrow(self, runs_start_past_zero: bool) -> Chunked:
        """The plan for a layout: float32 prefix states where every run starts at block 0
        (``P[hi] - P[0]`` is ``P[hi]``: nothing cancels), as the Triton launch chooses."""
        return self if runs_start_past_zero else replace(self, prefix_bytes=4)


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
    chunked: Chunked | None = None  # linear terms, chunked (None: every term walks every tile)
    kv_inputs: tuple = ()  # (name, bytes per tile) of each key-side input: its share of kv_bytes


def work_of(node: E.Expr) -> tuple[int, int]:
    """(SFU, ALU) work per element of one node (ops not in :data:`WORK` count one ALU op)."""
    return WORK.get(node.op, ALU)


def _weighted_ops(expr: E.Expr, sizes: dict, skip: frozenset = frozenset(), hoisted: bool = True) -> tuple[float, float]:
    """(SFU, ALU) work per tile of the nodes of ``expr`` that vary with the key index ``n``
    (query-only work is done once per query block, not per tile), by broadcast class;
    ``hoisted=False`` counts every node once per element (a kernel that does not hoist)."""
    sfu = alu = 0.0
    for node in E.walk(expr):
        node_sfu, node_alu = work_of(node)
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
    kv_inputs = []
    for decl in program.inputs:
        elems = 1.0
        for x in decl.letters:
            if x not in ("b", "h", "m", "n"):
                elems *= sizes.get(x, 1)
        if "n" in decl.letters:
            kv += elems * bn * dtype_bytes
            kv_inputs.append((decl.name, elems * bn * dtype_bytes))
        elif "m" in decl.letters:
            q += elems * bm * dtype_bytes
    return TileWork(tensor, sfu, alu, mask_alu, mask_sfu, kv, q, bm * value_dim * dtype_bytes, epilogue, softmaxes,
                    mask_nodes, _chunked(program, bm, bn, head_dim, value_dim, tensor, kv), tuple(kv_inputs))


def _chunked(program: Program, bm: int, bn: int, head_dim: int, value_dim: int, tensor: float,
             kv_bytes: float) -> Chunked | None:
    """The chunked work of the plan's linear terms, or None when it has none (or no plan)."""
    try:
        plan = lower(program)
    except UnsupportedError:
        return None
    linear = [t for t in plan.terms if t.kind == "linear"]
    if not linear:
        return None
    per_term_tile = 2.0 * bm * bn * (head_dim + value_dim)  # the quadratic form of one term

    def feature_ops(side: str, rows: int) -> tuple[float, float]:
        """(SFU, ALU) of applying each term's feature map to ``rows`` x head_dim elements."""
        maps = [getattr(t.scores, side) for t in linear]
        work = [work_of(n) for phi in maps if phi is not None for n in E.walk(phi) if n.src]
        return tuple(rows * head_dim * sum(w[i] for w in work) for i in (0, 1))
    return Chunked(
        key_block_flops=len(linear) * 2.0 * bn * head_dim * (value_dim + 1),
        key_block_ops=feature_ops("phi_k", bn),
        row_ops=feature_ops("phi_q", bm),
        kv_block_bytes=kv_bytes,
        state_elems=len(linear) * (head_dim * value_dim + head_dim),  # phi(K)^T V and sum phi(K)
        row_flops=len(linear) * 2.0 * bm * head_dim * (value_dim + 1),
        full_tensor_flops=max(0.0, tensor - len(linear) * per_term_tile),
        visits_full=len(linear) < len(plan.terms))


def key_loop(program: Program) -> bool:
    """Whether some equation ranges over both the query and the key index: the kernel walks
    (query block x key block) tiles. Otherwise every equation is linear in the length."""
    return any({"m", "n"} <= set(eqn.letters) | E.letters_of(eqn.rhs) for eqn in program.eqns)


@dataclass(frozen=True)
class Pass:
    """One equation evaluated as a whole-tensor pass (what the reference backend runs)."""

    name: str
    flops: float        # tensor-core FLOPs (contractions)
    ops: float          # ALU / special-function operations (elementwise maps, reductions)
    bytes: float        # operands read and the result written


def einsum_passes(program: Program, sizes: dict, dtype_bytes: int = 2) -> list[Pass]:
    """Each equation as one pass over whole tensors: a contraction's ``2 x (product of all its
    letters' sizes)`` FLOPs on the tensor cores, its ops per element of the product space, and
    every operand read and the result written once (intermediates in float32).

    >>> import attncomp as ac
    >>> spec = ac.cascade("G[b,h,d,e] = K[b,h,n,d] * V[b,h,n,e]\\nO[b,h,m,e] = Q[b,h,m,d] * G")
    >>> [p.flops for p in einsum_passes(spec, {"m": 8, "n": 8, "d": 4, "e": 4})]
    [256.0, 256.0]
    """
    size = lambda letters: elements(letters, sizes)
    inputs = {d.name for d in program.inputs}
    shapes = {d.name: d.letters for d in program.inputs} | {e.name: e.letters for e in program.eqns}
    out = []
    for eqn in program.eqns:
        letters = E.letters_of(eqn.rhs) | set(eqn.letters)
        contraction = bool(letters - set(eqn.letters))
        space = size(letters)
        ops = sum(sum(work_of(n)) for n in E.walk(eqn.rhs) if n.src) * space
        flops = 0.0
        if contraction:
            flops, ops = 2.0 * space, max(0.0, ops - space)  # the product's multiply-adds run on tensor cores
        reads = {n.arg for n in E.walk(eqn.rhs) if n.op == Op.REF and n.arg in shapes}
        read = sum(size(shapes[name]) * (dtype_bytes if name in inputs else 4) for name in reads)
        out.append(Pass(eqn.name, flops, ops, read + size(eqn.letters) * 4))
    return out


def elements(letters, sizes: dict) -> float:
    """Elements of a tensor over ``letters`` (a letter without a size counts 1)."""
    return float(math.prod(sizes.get(x, 1) for x in letters))
