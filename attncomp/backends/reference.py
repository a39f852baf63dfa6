"""The reference backend: dense torch evaluation of any Program. The oracle.

Each equation is evaluated as einsums over the factors of its products (each factor
evaluated elementwise on its own letters), so ``Q * K`` is a matmul, not a
``[b,h,m,n,d]`` broadcast; additive terms are summed separately (Einstein convention).
Mask semantics (see :mod:`attncomp.ir.program`): factors and results that carry both
``m`` and ``n`` are zeroed at masked-out pairs, and reductions over ``n`` skip them, so a
row with no pair left gives 0.

Queries are processed in chunks of rows when no equation sums over ``m`` (true of every
attention variant), which bounds memory by ``rows x kv_len`` per intermediate: 32K-token
problems fit in a few GiB. Float64 inputs are evaluated in float64; others in float32,
with the output cast back to the inputs' dtype.
"""

from __future__ import annotations

import string

import torch

from ..errors import CascadeError
from ..ir import expr as E
from ..ir.evaluate import Env, Value, align, apply_mask, evaluate, union
from ..ir.arguments import positive_int
from ..ir.plan import Plan
from ..ir.program import Eqn, Program
from ..ir.selection import Chooser, expand_to_keys
from .binding import Bound
from .registry import Kernel, register

DEFAULT_BUDGET = 1 << 25  # elements per intermediate per chunk (256 MiB in float64)


def factors(expr: E.Expr) -> list[E.Expr]:
    """The operands of a product ``a * b / c`` (``1 / c`` for divisors; one if not a product)."""
    if expr.op == "mul":
        return factors(expr.src[0]) + factors(expr.src[1])
    if expr.op == "truediv" and expr.src[1].op != "const":
        return factors(expr.src[0]) + [E.binary("truediv", E.const(1.0), expr.src[1])]
    return [expr]


def elementwise_pieces(expr: E.Expr) -> list[E.Expr]:
    """The subexpressions :func:`contract` evaluates elementwise: the factors of each term."""
    if expr.op in ("add", "sub"):
        return elementwise_pieces(expr.src[0]) + elementwise_pieces(expr.src[1])
    if expr.op == "neg":
        return elementwise_pieces(expr.src[0])
    return factors(expr)


def _row_cost(program: Program, sizes: dict[str, int]) -> int:
    """Elements per query row of the largest intermediate that has a query dimension."""
    def cost(letters) -> int:
        out = 1
        for x in letters:
            out *= sizes[x] if x != "m" else 1
        return out

    worst = 1
    for eqn in program.eqns:
        for f in elementwise_pieces(eqn.rhs):
            for node in E.walk(f):
                letters = E.letters_of(node) | ({node.arg} if node.op in E.REDUCTIONS else set())
                if "m" in letters:
                    worst = max(worst, cost(letters))
        worst = max(worst, cost(eqn.letters))
    return worst


def chunkable(program: Program) -> bool:
    """True if rows (``m``) can be evaluated independently: no equation sums or reduces
    over ``m``, and every tensor keeps ``m`` in the same position wherever it is read."""
    defined = program.defined_letters()
    for eqn in program.eqns:
        if "m" in E.letters_of(eqn.rhs) and "m" not in eqn.letters:
            return False
        for node in E.walk(eqn.rhs):
            if node.op in E.REDUCTIONS and node.arg == "m":
                return False
            if node.op == "ref":
                used = tuple(s.arg for s in node.src)
                if any((u == "m") != (d == "m") for u, d in zip(used, defined[node.arg])):
                    return False
    return True


def _einsum(values: list[Value], out_letters: tuple[str, ...], dtype: torch.dtype) -> torch.Tensor:
    scalar = None
    operands, subs = [], []
    chars = {}
    for v in values:
        t = v.t if v.t.dtype == dtype else v.t.to(dtype)
        if not v.letters:
            scalar = t if scalar is None else scalar * t
            continue
        operands.append(t)
        subs.append("".join(chars.setdefault(x, string.ascii_letters[len(chars)]) for x in v.letters))
    if not operands:
        return scalar
    out = torch.einsum(",".join(subs) + "->" + "".join(chars[x] for x in out_letters), *operands)
    return out * scalar if scalar is not None else out


def contract(program: Program, expr: E.Expr, keep: tuple[str, ...], env: Env) -> Value:
    """``expr`` summed over its letters that are not in ``keep``, Einstein-style: each
    additive term sums its own letters (``Q * K + bias[h, m - n]`` adds the bias once),
    a product is one einsum over its factors, and factors or terms carrying both ``m``
    and ``n`` have masked-out pairs zeroed first."""
    if expr.op in ("add", "sub"):
        a, b = (contract(program, s, keep, env) for s in expr.src)
        letters = union(env.order, a, b)
        fn = torch.add if expr.op == "add" else torch.sub
        return Value(fn(align(a, letters), align(b, letters)), letters)
    if expr.op == "neg":
        a = contract(program, expr.src[0], keep, env)
        return Value(-a.t, a.letters)
    values = []
    for f in factors(expr):
        v = evaluate(f, env)
        # an equation's result, read with its own letters, is already zero at masked pairs
        if not (f.op == "ref" and f.arg in env.masked and tuple(x.arg for x in f.src) == env.refs[f.arg].letters):
            v = apply_mask(v, env, 0.0)
        extra = set(v.letters) - E.letters_of(f) - set(keep)
        if extra:
            raise CascadeError(f"the mask depends on {', '.join(sorted(extra))}, which `{expr}` does not have",
                               variant=program.name, location=program.source)
        values.append(v)
    out_letters = union(env.order, *values)
    summed = set(out_letters) - set(keep)
    out_letters = tuple(x for x in out_letters if x in keep)
    out = _einsum(values, out_letters, env.float_dtype)
    if "n" in summed and env.mask is not None and "n" in env.mask.letters:
        # a row with no pair left sums nothing: 0, even where a factor of it is not finite
        # (``E * V / Z`` with ``Z = sum[n](E) = 0``)
        rows = Value(env.mask.t.any(dim=env.mask.letters.index("n")), tuple(x for x in env.mask.letters if x != "n"))
        if set(rows.letters) <= set(out_letters):
            out = torch.where(align(rows, out_letters), out, 0.0)
    return Value(out, out_letters)


def eval_eqn(program: Program, eqn: Eqn, env: Env) -> torch.Tensor:
    """Evaluate one equation; the result's dimensions follow ``eqn.letters``."""
    canon = tuple(x for x in env.order if x in eqn.letters)
    value = contract(program, eqn.rhs, canon, env)
    shape = [len(env.index[x]) for x in canon]
    out = align(Value(value.t.to(env.float_dtype), value.letters), canon).expand(shape)
    masked = apply_mask(Value(out, canon), env, 0.0)
    if masked.letters != canon:
        raise CascadeError(f"the mask depends on an index that {eqn.name}[{','.join(eqn.letters)}] lacks",
                           variant=program.name, location=program.source)
    return masked.t.permute([canon.index(x) for x in eqn.letters])


def _selected(chooser: Chooser, env: Env) -> Value:
    """The mask of this chunk of rows narrowed to the key blocks the selection chooses."""
    chosen = chooser(env.index["m"])
    if chooser.sel.shared:  # one choice per KV group: each query head reads its group's
        chosen = chosen.repeat_interleave(chooser.group, 1)
    keys = Value(expand_to_keys(chosen, chooser.block, len(env.index["n"])), ("b", "h", "m", "n"))
    if env.mask is None:
        return keys
    letters = union(env.order, env.mask, keys)
    return Value(align(env.mask, letters) & align(keys, letters), letters)


def run(program: Program, bound: Bound, budget: int = DEFAULT_BUDGET) -> torch.Tensor:
    """Evaluate ``program`` on bound tensors; returns the last equation's tensor."""
    inputs = bound.inputs
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in inputs.values()) else torch.float32
    out_dtype = next(iter(inputs.values())).dtype
    device = bound.device
    full: dict[str, torch.Tensor] = {}
    for decl in program.inputs:
        t = inputs[decl.name].to(dtype)
        if bound.groups[decl.name] > 1:  # grouped-query attention: share each K/V head
            t = t.repeat_interleave(bound.groups[decl.name], dim=decl.letters.index("h"))
        full[decl.name] = t
    sizes = bound.sizes
    rows = sizes.get("m", 1)
    step = max(1, budget // _row_cost(program, sizes)) if "m" in sizes and chunkable(program) else rows
    index = {x: torch.arange(sizes[x], device=device) for x in bound.order}
    m_free = {e.name for e in program.eqns if "m" not in E.letters_of(e.rhs)}
    cache: dict[str, torch.Tensor] = {}
    sel = program.selection  # keys pooled once, blocks chosen per chunk of rows
    chooser = Chooser(sel, inputs[sel.q], inputs[sel.k], bound.tensors, bound.params, program.name, dtype) \
        if sel is not None else None
    pieces = []
    for m0 in range(0, rows, step):
        m1 = min(rows, m0 + step)
        env = Env(order=bound.order, index=dict(index), tensors=bound.tensors, params=bound.params,
                  float_dtype=dtype, variant=program.name)
        if "m" in sizes:
            env.index["m"] = index["m"][m0:m1]
        for decl in program.inputs:
            t = full[decl.name]
            if "m" in decl.letters and step < rows:
                t = t.narrow(decl.letters.index("m"), m0, m1 - m0)
            env.refs[decl.name] = Value(t, decl.letters)
        if program.mask is not None:
            mv = evaluate(program.mask, env)
            env.mask = Value(mv.t.to(torch.bool), mv.letters)
        if chooser is not None:
            env.mask = _selected(chooser, env)
        for eqn in program.eqns:
            if eqn.name in cache:
                t = cache[eqn.name]
            else:
                t = eval_eqn(program, eqn, env)
                if eqn.name in m_free:
                    cache[eqn.name] = t
            env.refs[eqn.name] = Value(t, eqn.letters)
            env.masked.add(eqn.name)
        pieces.append(env.refs[program.output].t)
    out_letters = program.eqns[-1].letters
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=out_letters.index("m"))
    return out.to(out_dtype) if out_dtype != dtype and out_dtype.is_floating_point else out


@register("reference", "reference", generated=False)
class ReferenceKernel(Kernel):
    """Dense evaluation of a Program; call as ``kernel(q, k, v, **tensors)``.

    >>> import torch, attncomp as ac
    >>> kernel = ac.compile(ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx), backend="reference")
    >>> q = k = v = torch.randn(1, 2, 5, 8, dtype=torch.float64)
    >>> out = kernel(q, k, v)
    >>> out.shape, bool(torch.allclose(out[:, :, 0], v[:, :, 0]))
    (torch.Size([1, 2, 5, 8]), True)
    """

    differentiable = True
    selects = True

    def __init__(self, spec: Program | Plan, budget: int = DEFAULT_BUDGET):
        super().__init__(spec)
        self.budget = positive_int("budget", budget, self.spec.name, limit=2 ** 62)  # elements per chunk

    @property
    def program(self) -> Program:
        return self.spec  # as written: the oracle must not depend on the passes it checks

    def run(self, bound: Bound) -> torch.Tensor:
        # differentiable by construction: plain autograd through the dense evaluation (which
        # keeps every chunk's intermediates for the backward, so memory grows with them)
        return run(self.program, bound, self.budget)

    def __repr__(self) -> str:
        return f"ReferenceKernel({self.program.name})"
