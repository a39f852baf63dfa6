"""The executable meaning of every Expr op, as torch on index grids.

A value is a tensor together with the index letters its dimensions stand for, always in
one canonical letter order, so two values broadcast by inserting size-1 dimensions. Index
letters take the integer values given in ``Env.index`` (a range of query rows, the
corners of tiles, ...), so the same evaluator serves the dense reference backend and the
brute-force check of tiles the sparsity analysis cannot decide.

Semantics are torch's: every op is its torch function on operands in the dtypes
:mod:`attncomp.ir.dtypes` infers (indices int64, ``q_idx * 0.5`` float32, ``bool + bool``
a logical or, integers wrapping at their width), Python numbers passed as Python numbers.
Only the score and cascade tensors follow ``Env.float_dtype`` (float64 in the reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import AttncompError
from . import dtypes as D
from . import expr as E
from .ops import Op


class Value(NamedTuple):
    t: torch.Tensor
    letters: tuple[str, ...]


@dataclass
class Env:
    """What an evaluation needs: letter order and the values each index letter takes (a 1-D
    tensor, or a Value over other letters, e.g. per-tile sample points), runtime tensors,
    params, cascade tensors (``refs``: tensor + the letters of its dimensions) and the
    evaluated mask. ``checked=False`` skips the data-dependent bounds and zero-divisor
    checks, for use inside traced code (FlexAttention's vmap)."""

    order: tuple[str, ...]
    index: dict[str, torch.Tensor | Value]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    params: dict[str, int | float] = field(default_factory=dict)
    refs: dict[str, Value] = field(default_factory=dict)
    mask: Value | None = None
    masked: set[str] = field(default_factory=set)  # refs already zero at masked-out pairs
    float_dtype: torch.dtype = torch.float64
    variant: str = "program"
    checked: bool = True


def align(v: Value, letters: tuple[str, ...]) -> torch.Tensor:
    """``v``'s tensor viewed with a (possibly size-1) dimension for each of ``letters``."""
    if v.letters == letters:
        return v.t
    shape = [v.t.shape[v.letters.index(x)] if x in v.letters else 1 for x in letters]
    return v.t.reshape(shape)


def union(order: tuple[str, ...], *values: Value) -> tuple[str, ...]:
    present = set().union(*(v.letters for v in values))
    return tuple(x for x in order if x in present)


def apply_mask(v: Value, env: Env, fill: float) -> Value:
    """Fill the entries of ``v`` at non-existent (masked-out) pairs, if it has m and n."""
    if env.mask is None or not {"m", "n"} <= set(v.letters):
        return v
    letters = union(env.order, v, env.mask)
    return Value(torch.where(align(env.mask, letters), align(v, letters), fill), letters)


def _as_float(v: torch.Tensor, env: Env) -> torch.Tensor:
    return v if v.dtype == env.float_dtype else v.to(env.float_dtype)


def _checked_operands(e: E.Expr, env: Env, args: list[torch.Tensor]) -> None:
    """The data-dependent errors torch would raise (or, for an integer ``x ** -1``, answer
    with garbage on some devices): integer division by zero, negative integer powers."""
    if not env.checked or e.op not in (Op.FLOORDIV, Op.MOD, Op.POW) or e.dtype == E.FLOAT:
        return
    b, divisor = args[1], e.src[1]
    b_min = b if isinstance(b, (int, float)) else (b.min().item() if isinstance(b, torch.Tensor) and b.numel() else 1)
    if e.op == Op.POW and b_min < 0:
        raise AttncompError(f"an integer raised to a negative power: {e}", hint="Use float(x) ** y", variant=env.variant)
    if e.op != Op.POW and not (divisor.op == Op.CONST and divisor.arg != 0):
        zero = b == 0 if isinstance(b, (int, float)) else bool((b == 0).any())
        if zero:
            raise AttncompError("integer division or modulo by zero", variant=env.variant)


# The meaning of each pointwise op: torch's function (the one dtype inference runs), on
# operands in their own dtypes, Python numbers passed as Python numbers.
POINTWISE = D.TORCH_FN


class _Evaluator:
    def __init__(self, env: Env):
        self.env = env
        self.memo: dict[E.Expr, Value] = {}
        # Leaves and reductions read the environment or reduce along a letter.
        self.special = {Op.VAR: self.var, Op.CONST: self.const, Op.PARAM: self.param, Op.LOAD: self.load,
                        Op.REF: self.ref, Op.SOFTMAX: self.reduction, Op.REDUCE_MAX: self.reduction,
                        Op.REDUCE_SUM: self.reduction}

    def __call__(self, e: E.Expr) -> Value:
        if e not in self.memo:
            self.memo[e] = self.eval(e)
        return self.memo[e]

    def eval(self, e: E.Expr) -> Value:
        env, op = self.env, e.op
        special = self.special.get(op)
        if special is not None:
            return special(e)
        args = [self(s) for s in e.src]
        letters = union(env.order, *args)
        all_weak = D.is_weak(e.tdtype)
        # a Python number stays one (torch promotes it by category only); tensors broadcast
        operands = [v.t.item() if D.is_weak(s.tdtype) and not all_weak else align(v, letters)
                    for v, s in zip(args, e.src)]
        _checked_operands(e, env, operands)
        try:
            out = POINTWISE[op](*operands)
        except RuntimeError as err:
            raise AttncompError(f"torch cannot compute {e}: {str(err).splitlines()[0]}", variant=env.variant) from None
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out, dtype=D.torch_dtype(e.tdtype))
        return Value(out, letters)

    def var(self, e: E.Expr) -> Value:
        idx = self.env.index[e.arg]
        return idx if isinstance(idx, Value) else Value(idx, (e.arg,))

    def const(self, e: E.Expr) -> Value:
        return Value(torch.tensor(e.arg, dtype=D.torch_dtype(e.tdtype)), ())

    def param(self, e: E.Expr) -> Value:
        return Value(torch.tensor(self.env.params[e.arg[0]], dtype=D.torch_dtype(e.tdtype)), ())

    def ref(self, e: E.Expr) -> Value:
        t, _ = self.env.refs[e.arg]
        letters = tuple(s.arg for s in e.src)
        target = tuple(x for x in self.env.order if x in letters)
        return Value(t.permute([letters.index(x) for x in target]), target)

    def load(self, e: E.Expr) -> Value:
        env, decl = self.env, e.arg
        t = env.tensors[decl.name]
        idx = [self(s) for s in e.src]
        letters = union(env.order, *idx)
        aligned = []
        for pos, (v, sub) in enumerate(zip(idx, e.src)):
            ix = align(v, letters)
            lo, hi = (int(ix.min()), int(ix.max())) if ix.numel() and env.checked else (0, 0)
            if lo < 0 or hi >= t.shape[pos]:
                raise AttncompError(f"index {pos} of {decl.name} is `{sub}`, which takes values {lo}..{hi}, "
                                    f"outside 0..{t.shape[pos] - 1} (shape {tuple(t.shape)})",
                                    hint="Clamp it or make the tensor larger", variant=env.variant)
            aligned.append(ix)
        out = t[tuple(aligned)] if aligned else t
        dtype = D.torch_dtype(decl.dtype)
        return Value(out if out.dtype == dtype else out.to(dtype), letters)

    def reduction(self, e: E.Expr) -> Value:
        env, letter = self.env, e.arg
        x = self(e.src[0])
        x = Value(_as_float(x.t, env), x.letters)
        s = self(e.src[1]) if len(e.src) == 2 else None  # a softmax's sink logit
        if letter not in x.letters or (s is not None and not set(s.letters) <= set(x.letters)):
            # constant along the reduced letter (or a sink's): broadcast it
            letters = tuple(l for l in env.order if l in x.letters or l == letter or (s and l in s.letters))
            shape = [len(env.index[l]) for l in letters]
            x = Value(align(x, letters).expand(shape), letters)
        fill = 0.0 if e.op == "reduce_sum" else float("-inf")
        x = apply_mask(x, env, fill)
        dim = x.letters.index(letter)
        if e.op == "reduce_sum":
            return Value(x.t.sum(dim), tuple(l for l in x.letters if l != letter))
        top = x.t.amax(dim, keepdim=True)
        if e.op == "reduce_max":
            return Value(top.squeeze(dim), tuple(l for l in x.letters if l != letter))
        sink = None
        if s is not None:  # a sink logit joins the max and the normalizer, with no value of its own
            sink = align(Value(_as_float(s.t, env), s.letters), x.letters)
            top = torch.maximum(top, sink)
        # Safe softmax: a row whose entries are all -inf (or masked out) gives zeros, not NaN.
        # Its gradient is zero there too: exp(-inf - 0) = 0 has derivative 0, never NaN.
        top = torch.where(torch.isneginf(top), torch.zeros_like(top), top)
        p = x.t - top
        grad = p.requires_grad or (sink is not None and sink.requires_grad)
        if grad:  # out of place: autograd keeps exp's output for the backward
            p = p.exp()
        else:
            p.exp_()  # in place: a [rows, keys] chunk is the reference's largest buffer
        total = p.sum(dim, keepdim=True)
        if sink is not None:
            total = total + (sink - top).exp()
        inverse = torch.where(total == 0, torch.ones_like(total), total).reciprocal()
        return Value(p * inverse if grad else p.mul_(inverse), x.letters)


def evaluate(expr: E.Expr, env: Env) -> Value:
    """Evaluate ``expr`` over the index grid of ``env``.

    >>> import torch
    >>> from attncomp.ir.expr import var, const, binary
    >>> env = Env(order=("m", "n"), index={"m": torch.arange(3), "n": torch.arange(3)})
    >>> evaluate(binary("ge", var("m"), var("n")), env).t.int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    >>> evaluate(binary("floordiv", const(-7), const(2)), env).t.item()
    -4
    """
    return _Evaluator(env)(expr)


def dense_mask(mask: E.Expr | None, q_len: int, kv_len: int, tensors: dict | None = None,
               params: dict | None = None, batch: int = 1, heads: int = 1, variant: str = "mask",
               rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> torch.Tensor:
    """The mask evaluated at every ``(b, h, q, kv)``: a bool tensor ``[B, H, Sq, Skv]``
    (``rows``/``cols`` restrict it to some query / key indices). No mask: all True.

    >>> from attncomp.ir.expr import var, binary
    >>> dense_mask(binary("ge", var("m"), var("n")), 3, 3)[0, 0].int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    index = {"b": torch.arange(batch), "h": torch.arange(heads),
             "m": torch.arange(q_len) if rows is None else rows, "n": torch.arange(kv_len) if cols is None else cols}
    shape = tuple(len(index[x]) for x in E.MASK_LETTERS)
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    env = Env(order=E.MASK_LETTERS, index=index, tensors=dict(tensors or {}),
              params={k: v for k, v in (params or E.params_of(mask)).items() if v is not None}, variant=variant)
    v = evaluate(mask, env)
    return align(v, E.MASK_LETTERS).expand(shape)


def mask_mod(mask: E.Expr, tensors: dict | None = None, params: dict | None = None, variant: str = "mask"):
    """A FlexAttention ``mask_mod(b, h, q_idx, kv_idx)`` that interprets ``mask`` with torch
    ops: broadcasting, vmap- and compile-friendly (no data-dependent checks).

    >>> import torch
    >>> from attncomp.ir.expr import var, binary
    >>> fn = mask_mod(binary("ge", var("m"), var("n")))
    >>> fn(torch.tensor(0), torch.tensor(0), torch.tensor(3), torch.tensor(5)).item()
    False
    """
    values = {k: v for k, v in (params if params is not None else E.params_of(mask)).items() if v is not None}

    def mask_mod(b, h, q_idx, kv_idx):
        index = {"b": Value(b, ()), "h": Value(h, ()), "m": Value(q_idx, ()), "n": Value(kv_idx, ())}
        env = Env(order=(), index=index, tensors=dict(tensors or {}), params=values, variant=variant, checked=False)
        return evaluate(mask, env).t
    return mask_mod
