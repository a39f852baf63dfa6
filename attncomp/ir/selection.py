"""Data-dependent block selection: which key blocks each query attends to, chosen from the data.

MoBA (Lu et al., 2025), NSA (Yuan et al., 2025) and Quest (Tang et al., ICML 2024) all
choose key blocks per query from a cheap score of pooled keys. A :class:`Selection` is that
stage of a Program; its line in the text is::

    select[b,h,m,j] = topk(mean(K), Q, k=top_k, block=block, eligible=j <= m // block, forced=j == m // block)

with ``j`` the key block (keys ``[j * block, (j + 1) * block)``, the last one possibly short).
Its meaning, computed for each query ``m`` of each head ``h`` (of each KV head where
``shared``):

1. **Pool** each key block per channel: ``mean(K)`` or ``max(K)``, or ``bounds(K)``: the
   channel's min and max (Quest).
2. **Gate** ``g[b,h,m,j]``: ``q . pooled`` for mean and max (MoBA: no scale); for bounds
   Quest's upper bound of ``q . k`` over the block, ``sum_d max(q_d min_d, q_d max_d)``.
   With ``query_block`` the choice is made once per block of that many queries (as in
   SeerAttention and block-level routing): ``q`` is the mean of the block's queries and the
   predicates below are read at its last row, which the mask then narrows row by row.
   ``normalize`` turns the gates into a softmax over the row's eligible blocks of
   ``g / sqrt(D)`` (NSA's compressed-attention scores ``p_cmp``: forced blocks that are not
   eligible, such as an incomplete own block, have no compressed token and score 0); ``shared`` sums them over the query heads
   of each KV group, whose heads then share one choice (NSA, eq. 10).
3. **Candidates** are the blocks where ``eligible | forced`` holds (a static predicate of
   ``b, h, m, j``: causality, always-kept initial, local and own blocks). ``forced`` blocks
   are always chosen and count toward ``k``.
4. **Choose**: ``topk`` takes the forced blocks, then the other candidates by descending gate
   until ``k`` blocks are chosen (all candidates where there are fewer); ``threshold`` the
   candidates with ``g >= at``; ``top_p`` candidates by descending gate until their share of
   the row's gate mass (a softmax of ``g / sqrt(D)``, or the gates themselves when
   normalized) reaches ``p``, the block that crosses ``p`` included. Ties go to the lower
   block index (a stable sort), and a NaN gate ranks below every number.

The Program's pairs are then those its mask keeps whose key block was chosen:
``mask(b, h, m, n) & chosen[b, h, m, n // block]``. The choice has no gradient (it is
piecewise constant); gradients flow through the attention over the chosen keys, as in MoBA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import AttncompError
from . import expr as E
from .evaluate import Env, align, evaluate

RULES = {"topk": "k", "threshold": "at", "top_p": "p"}  # rule -> the keyword of its count
POOLS = ("mean", "max", "bounds")
LETTERS = ("b", "h", "m", "j")


@dataclass(frozen=True)
class Selection:
    """A selection stage (see the module docstring); ``q`` and ``k`` name the inputs it reads."""

    rule: str
    pool: str
    count: E.Expr
    block: E.Expr
    eligible: E.Expr
    forced: E.Expr | None = None
    shared: bool = False
    normalize: bool = False
    q: str = "Q"
    k: str = "K"
    query_block: E.Expr | None = None  # None: one choice per query token

    @property
    def exprs(self) -> tuple[E.Expr, ...]:
        return tuple(e for e in (self.count, self.block, self.eligible, self.forced, self.query_block)
                     if e is not None)

    def substitute(self, mapping: dict[E.Expr, E.Expr]) -> Selection:
        return self.map(lambda e: E.substitute(e, mapping))

    def map(self, fn) -> Selection:
        """The selection with ``fn`` applied to each of its expressions (a pass)."""
        keep = lambda e: fn(e) if e is not None else None  # noqa: E731
        return replace(self, count=fn(self.count), block=fn(self.block), eligible=fn(self.eligible),
                       forced=keep(self.forced), query_block=keep(self.query_block))

    def format(self) -> str:
        from .printer import format_expr

        parts = [f"{self.pool}({self.k})", self.q, f"{RULES[self.rule]}={format_expr(self.count)}",
                 f"block={format_expr(self.block)}", f"eligible={format_expr(self.eligible)}"]
        parts += [f"forced={format_expr(self.forced)}"] if self.forced is not None else []
        parts += [f"query_block={format_expr(self.query_block)}"] if self.query_block is not None else []
        parts += ["shared=True"] * self.shared + ["normalize=True"] * self.normalize
        return f"select[b,h,m,j] = {self.rule}({', '.join(parts)})"

    def __str__(self) -> str:
        return self.format()


def value_of(expr: E.Expr, params: dict, what: str, variant: str) -> int | float:
    """The value of a selection's count or block (a constant or a parameter)."""
    if expr.op == "const":
        return expr.arg
    if expr.op == "param" and params.get(expr.arg[0], expr.arg[1]) is not None:
        return params.get(expr.arg[0], expr.arg[1])
    env = Env(order=(), index={}, params={k: v for k, v in params.items() if v is not None}, variant=variant)
    try:
        return evaluate(expr, env).t.item()
    except KeyError:
        raise AttncompError(f"the selection's {what} `{expr}` has no value", variant=variant) from None


def query_block(sel: Selection, params: dict, variant: str) -> int:
    """Queries per choice (1: per token), checked."""
    size = 1 if sel.query_block is None else value_of(sel.query_block, params, "query_block", variant)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise AttncompError(f"the selection's query_block must be a positive int, got {size!r}", variant=variant)
    return size


def deciding_rows(rows: torch.Tensor, size: int, q_len: int) -> torch.Tensor:
    """The row whose predicates decide each row's choice: its own, or its query block's last."""
    return rows if size == 1 else torch.clamp((torch.div(rows, size, rounding_mode="floor") + 1) * size - 1,
                                              max=q_len - 1)


def sizes(sel: Selection, params: dict, kv_len: int, variant: str) -> tuple[int, int | float, int]:
    """``(block, count, key blocks)``, checked: a block of at least one key, a top-k of at
    least one block, a top-p in (0, 1]."""
    block, count = value_of(sel.block, params, "block", variant), value_of(sel.count, params, RULES[sel.rule], variant)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise AttncompError(f"the selection's block must be a positive int (keys per block), got {block!r}",
                            variant=variant)
    if sel.rule == "topk" and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise AttncompError(f"top-k selection needs k >= 1 blocks, got k={count!r}", variant=variant)
    if sel.rule == "top_p" and not 0 < count <= 1:
        raise AttncompError(f"top-p selection needs 0 < p <= 1, got p={count!r}", variant=variant)
    return block, count, -(-kv_len // block)


POOL_CHUNK = 1 << 24  # key elements converted and pooled at once


def pooled(sel: Selection, k: torch.Tensor, block: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per key block and channel, in ``dtype``: the pooled keys ``[B, Hk, NB, D]`` (bounds:
    min and max), a few blocks at a time (no whole-K copy in the wider dtype)."""
    B, Hk, N, D = k.shape
    nb = -(-N // block)
    step = max(1, POOL_CHUNK // max(1, B * Hk * block * D))
    lows, highs = [], []
    for j0 in range(0, nb, step):
        j1 = min(nb, j0 + step)
        keys = k[:, :, j0 * block:min(N, j1 * block)].to(dtype)
        count = keys.shape[2]
        pad = (j1 - j0) * block - count
        if sel.pool == "mean":
            sums = torch.nn.functional.pad(keys, (0, 0, 0, pad)).view(B, Hk, j1 - j0, block, D).sum(3)
            sizes_ = torch.full((j1 - j0, 1), float(block), dtype=dtype, device=k.device)
            sizes_[-1] = count - (j1 - j0 - 1) * block
            lows.append(sums / sizes_)
            continue
        blocks = lambda fill: torch.nn.functional.pad(keys, (0, 0, 0, pad), value=fill).view(B, Hk, j1 - j0, block, D)
        highs.append(blocks(float("-inf")).amax(3))
        if sel.pool == "bounds":
            lows.append(blocks(float("inf")).amin(3))
    if sel.pool == "max":
        return torch.cat(highs, 2), None
    return torch.cat(lows, 2), (torch.cat(highs, 2) if highs else None)


def candidates(sel: Selection, batch: int, heads: int, rows: torch.Tensor, nb: int, tensors: dict, params: dict,
               variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eligible, forced)`` as bool ``[batch, heads, rows, nb]`` (broadcast views)."""
    device = rows.device
    index = {"b": torch.arange(batch, device=device), "h": torch.arange(heads, device=device), "m": rows,
             "j": torch.arange(nb, device=device)}
    env = Env(order=LETTERS, index=index, tensors=tensors, params={k: v for k, v in params.items() if v is not None},
              variant=variant)
    shape = (batch, heads, len(rows), nb)

    def grid(expr):
        return align(evaluate(expr, env), LETTERS).to(torch.bool).expand(shape)
    forced = grid(sel.forced) if sel.forced is not None else torch.zeros(shape, dtype=torch.bool, device=device)
    return grid(sel.eligible), forced


class Chooser:
    """The choice of :class:`Selection` ``sel`` for query and key inputs ``q`` ``[B, H, M, D]``
    and ``k`` ``[B, Hk, N, D]`` (H a multiple of Hk), gates in ``dtype`` (by default float64
    for float64 inputs, else float32): keys pooled once, then ``chooser(rows)`` gives the
    chosen key blocks of query ``rows``, bool ``[B, H or Hk (shared), len(rows), NB]``."""

    @torch.no_grad()
    def __init__(self, sel: Selection, q: torch.Tensor, k: torch.Tensor, tensors: dict, params: dict,
                 variant: str = "program", dtype: torch.dtype | None = None):
        self.sel, self.q, self.tensors, self.params, self.variant = sel, q, tensors, params, variant
        self.dtype = dtype or (torch.float64 if q.dtype == torch.float64 else torch.float32)
        self.block, self.count, self.nb = sizes(sel, params, k.shape[2], variant)
        self.group = q.shape[1] // k.shape[1]
        self.size = query_block(sel, params, variant)
        if self.size > 1:  # the mean query of each query block
            B, H, M, D = q.shape
            nq = -(-M // self.size)
            padded = torch.nn.functional.pad(q.to(self.dtype), (0, 0, 0, nq * self.size - M))
            counts = torch.clamp(M - torch.arange(nq, device=q.device) * self.size, max=self.size)
            self.pooled_q = padded.view(B, H, nq, self.size, D).sum(3) / counts[:, None].to(self.dtype)
        low, high = pooled(sel, k, self.block, self.dtype)
        self.low = low.repeat_interleave(self.group, 1)
        self.high = high.repeat_interleave(self.group, 1) if high is not None else None

    @torch.no_grad()
    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to(self.q.device)
        if self.size == 1:
            return self.decide(self.q[:, :, rows].to(self.dtype), rows)
        # one choice per query block, from the mean query of the block, made at its last row
        blocks, inverse = torch.unique(torch.div(rows, self.size, rounding_mode="floor"), return_inverse=True)
        chosen = self.decide(self.pooled_q[:, :, blocks], deciding_rows(blocks * self.size, self.size,
                                                                          self.q.shape[2]))
        return chosen[:, :, inverse]

    def decide(self, qr: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The choice for queries ``qr`` ``[B, H, R, D]`` whose predicates are read at ``rows``."""
        sel, nb, count = self.sel, self.nb, self.count
        B, H, _, D = self.q.shape
        if sel.pool == "bounds":  # Quest: the largest q . k any key of the block can give, channel by channel
            gate = torch.maximum(qr[..., None, :] * self.low[:, :, None], qr[..., None, :] * self.high[:, :, None]).sum(-1)
        else:
            gate = torch.einsum("bhmd,bhjd->bhmj", qr, self.low)
        eligible, forced = candidates(sel, B, 1 if sel.shared else H, rows, nb, self.tensors, self.params,
                                      self.variant)
        cand = eligible | forced
        gate = torch.nan_to_num(gate, nan=float("-inf"))
        scale = D ** -0.5
        if sel.normalize:  # a softmax over the row's eligible blocks (a row without any: all 0)
            scores = gate.mul(scale).masked_fill(~eligible, float("-inf"))
            top = scores.amax(-1, keepdim=True)
            e = (scores - torch.where(torch.isneginf(top), 0.0, top)).exp()
            gate = e / e.sum(-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
        if sel.shared:  # one choice per KV head: the gates of its query heads summed
            gate = gate.view(B, H // self.group, self.group, len(rows), nb).sum(2)
        cand, forced = cand.expand(gate.shape), forced.expand(gate.shape)
        if sel.rule == "threshold":
            return forced | (cand & (gate >= count))
        # rank the candidates: forced first, then by descending gate, ties to the lower block
        key = torch.where(forced, float("inf"), torch.where(cand, gate, float("-inf")))
        order = torch.sort(key, dim=-1, descending=True, stable=True).indices
        if sel.rule == "topk":
            rank = torch.empty_like(order).scatter_(-1, order, torch.arange(nb, device=order.device).expand_as(order))
            return forced | (cand & (rank < count))
        # top-p: a candidate is chosen while the mass ranked before it is below p
        mass = gate if sel.normalize else torch.softmax(gate.mul(scale).masked_fill(~cand, float("-inf")), -1)
        mass = torch.nan_to_num(mass, nan=0.0).masked_fill(~cand, 0.0)
        mass = mass / mass.sum(-1, keepdim=True).clamp_min(torch.finfo(mass.dtype).tiny)
        ranked = mass.gather(-1, order)
        before = torch.cumsum(ranked, -1) - ranked
        chosen = torch.zeros_like(cand).scatter_(-1, order, before < count)
        return forced | (cand & chosen)


def choose(sel: Selection, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, tensors: dict, params: dict,
           variant: str = "program") -> torch.Tensor:
    """The chosen key blocks of query ``rows`` (one use of a :class:`Chooser`).

    >>> import torch, attncomp as ac
    >>> spec = ac.variants.moba(block_size=4, top_k=2)
    >>> q, k = torch.randn(1, 1, 12, 8), torch.randn(1, 1, 12, 8)
    >>> chosen = choose(spec.selection, q, k, torch.arange(12), {}, spec.params)
    >>> chosen.sum(-1)[0, 0].tolist()  # own block + 1 earlier one (all there is before m = 4)
    [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
    """
    return Chooser(sel, q, k, tensors, params, variant)(rows)


def expand_to_keys(chosen: torch.Tensor, block: int, kv_len: int) -> torch.Tensor:
    """``chosen[..., j]`` as a per-key mask ``[..., kv_len]`` (key n is in block n // block)."""
    return chosen.repeat_interleave(block, dim=-1)[..., :kv_len]


def index_lists(chosen: torch.Tensor) -> torch.Tensor:
    """Per row, the chosen blocks ascending, padded with -1: int32 ``[..., max chosen]``.

    >>> index_lists(torch.tensor([[True, False, True], [False, True, False]])).tolist()
    [[0, 2], [1, -1]]
    """
    nb = chosen.shape[-1]
    width = max(1, int(chosen.sum(-1).max()) if chosen.numel() else 1)
    j = torch.arange(nb, device=chosen.device, dtype=torch.int32)
    ordered = torch.where(chosen, j, nb).sort(-1).values[..., :width]
    return torch.where(ordered == nb, -1, ordered).to(torch.int32)
