"""Canonicalize masks with sympy's algebra (never used to generate code).

Two rewrites, each kept only when it makes the expression smaller:

- comparisons between integer expressions become ``linear form OP constant`` after
  moving everything to one side and collecting terms (``(q - 5) - (kv - 5) >= 0`` is
  ``q >= kv``); non-linear parts (``//``, ``%``, loads, ``abs``, ``min``, ``max``) are
  opaque atoms, so sympy only ever rearranges integer-linear sums;
- the boolean skeleton (comparisons as atoms) goes through ``simplify_logic`` when it has
  few atoms (``(a & b) | a`` is ``a``).
"""

from __future__ import annotations

import functools
from dataclasses import replace

import sympy

from .. import expr as E
from ..program import Program
from ..rewrite import Pat, Rules, graph_rewrite

MAX_LOGIC_ATOMS = 6
_REL = {"lt": sympy.StrictLessThan, "le": sympy.LessThan, "gt": sympy.StrictGreaterThan,
        "ge": sympy.GreaterThan, "eq": sympy.Eq, "ne": sympy.Ne}


def size(e: E.Expr) -> int:
    return sum(1 for _ in E.walk(e))


class _Atoms:
    """Opaque sympy symbols for non-linear integer subexpressions, and back."""

    def __init__(self):
        self.to_sym: dict[E.Expr, sympy.Symbol] = {}
        self.to_expr: dict[sympy.Symbol, E.Expr] = {}

    def symbol(self, e: E.Expr) -> sympy.Symbol:
        if e not in self.to_sym:
            s = sympy.Symbol(f"a{len(self.to_sym)}", integer=True)
            self.to_sym[e], self.to_expr[s] = s, e
        return self.to_sym[e]

    def linear(self, e: E.Expr):
        if e.op == "const" and e.dtype == E.INT:
            return sympy.Integer(e.arg)
        if e.op in ("add", "sub") and e.dtype == E.INT:
            a, b = self.linear(e.src[0]), self.linear(e.src[1])
            return a + b if e.op == "add" else a - b
        if e.op == "neg" and e.dtype == E.INT:
            return -self.linear(e.src[0])
        if e.op == "mul" and e.dtype == E.INT and any(s.op == "const" for s in e.src):
            k, x = (e.src[0], e.src[1]) if e.src[0].op == "const" else (e.src[1], e.src[0])
            return sympy.Integer(int(k.arg)) * self.linear(x)
        return self.symbol(e)

    def build(self, poly) -> E.Expr:
        """An Expr for an integer-linear sympy expression (terms in a stable order)."""
        out = None
        terms = sorted(poly.as_ordered_terms(), key=lambda t: (t.is_number, str(t)))
        for term in terms:
            coeff, rest = term.as_coeff_Mul()
            coeff = int(coeff)
            if rest == 1:
                piece, sign = E.const(abs(coeff)), coeff < 0
            else:
                piece = self.to_expr[rest]
                if abs(coeff) != 1:
                    piece = E.binary("mul", E.const(abs(coeff)), piece)
                sign = coeff < 0
            if out is None:
                out = E.unary("neg", piece) if sign else piece
            else:
                out = E.binary("sub" if sign else "add", out, piece)
        return out if out is not None else E.const(0)


def _linear_form(e: E.Expr, atoms: _Atoms):
    """``e`` (an integer comparison) as ``(body, const, kind, positive)`` meaning
    ``body >= const`` (kind "ge") or ``body == const`` (kind "eq"), negated when not
    ``positive``; ``body`` is integer-linear with a positive leading coefficient."""
    a, b = e.src
    diff = sympy.expand(atoms.linear(a) - atoms.linear(b))
    const, body = diff.as_coeff_Add()
    const = -int(const)  # e: body OP const
    op = e.op
    if op in ("eq", "ne"):
        kind, positive = "eq", op == "eq"
    else:  # strict integer inequalities shift by one: x < c  <=>  ~(x >= c),  x > c  <=>  x >= c + 1
        kind = "ge"
        const, positive = {"ge": (const, True), "gt": (const + 1, True), "lt": (const, False), "le": (const + 1, False)}[op]
    leading = min(sympy.Add.make_args(body), key=lambda t: str(t.as_coeff_Mul()[1])) if body != 0 else None
    if leading is not None and leading.as_coeff_Mul()[0] < 0:
        body = -body  # body >= c  <=>  -body <= -c  <=>  ~(-body >= -c + 1)
        if kind == "ge":
            const, positive = -const + 1, not positive
        else:
            const = -const
    return body, const, kind, positive


def _comparison(body, const: int, kind: str, positive: bool, atoms: _Atoms) -> E.Expr:
    """The smallest Expr for ``body >= const`` / ``body == const`` (or their negation)."""
    if body == 0:
        truth = (0 >= const) if kind == "ge" else (0 == const)
        return E.const(truth == positive)
    op = {("ge", True): "ge", ("ge", False): "lt", ("eq", True): "eq", ("eq", False): "ne"}[kind, positive]
    candidates = [E.binary(op, atoms.build(body), E.const(int(const)))]
    pos = sum((t for t in sympy.Add.make_args(body) if t.as_coeff_Mul()[0] > 0), sympy.Integer(0))
    neg = pos - body
    if neg != 0 and pos != 0:
        candidates.append(E.binary(op, atoms.build(pos), atoms.build(neg + const)))
    return min(candidates, key=size)


def _canonical_comparison(e: E.Expr) -> E.Expr:
    if e.src[0].dtype != E.INT or e.src[1].dtype != E.INT:
        return e
    atoms = _Atoms()
    best = _comparison(*_linear_form(e, atoms), atoms)
    return best if size(best) < size(e) else e


def _logic(e: E.Expr) -> E.Expr:
    """Minimize the boolean skeleton; integer comparisons that differ only by negation or
    by an equivalent rearrangement become one atom."""
    lin = _Atoms()
    keys: dict = {}
    symbols: dict = {}

    def atom(x: E.Expr):
        if x.op in E.COMPARE and x.src[0].dtype == E.INT and x.src[1].dtype == E.INT:
            body, const, kind, positive = _linear_form(x, lin)
            key = (sympy.srepr(body), const, kind)
            keys.setdefault(key, (body, const, kind))
        else:
            key, positive = x, True
        if key not in symbols:
            symbols[key] = sympy.Symbol(f"c{len(symbols)}")
        return symbols[key] if positive else sympy.Not(symbols[key])

    def to_sym(x: E.Expr):
        if x.op in ("and", "or", "xor") and x.dtype == E.BOOL:
            f = {"and": sympy.And, "or": sympy.Or, "xor": sympy.Xor}[x.op]
            return f(to_sym(x.src[0]), to_sym(x.src[1]))
        if x.op == "invert" and x.dtype == E.BOOL:
            return sympy.Not(to_sym(x.src[0]))
        if x.op == "const" and x.dtype == E.BOOL:
            return sympy.true if x.arg else sympy.false
        return atom(x)

    skeleton = to_sym(e)
    if len(symbols) > MAX_LOGIC_ATOMS:
        return e
    back = {sym: key for key, sym in symbols.items()}

    def leaf(sym, positive: bool) -> E.Expr:
        key = back[sym]
        if key in keys:
            return _comparison(*keys[key][:3], positive, lin)
        return key if positive else E.unary("invert", key)

    def from_sym(s):
        if s is sympy.true or s is sympy.false:
            return E.const(bool(s))
        if isinstance(s, sympy.Symbol):
            return leaf(s, True)
        if isinstance(s, sympy.Not):
            return leaf(s.args[0], False) if isinstance(s.args[0], sympy.Symbol) else E.unary("invert", from_sym(s.args[0]))
        op = {sympy.And: "and", sympy.Or: "or", sympy.Xor: "xor"}[type(s)]
        args = sorted((from_sym(a) for a in s.args), key=str)
        out = args[0]
        for a in args[1:]:
            out = E.binary(op, out, a)
        return out

    best = from_sym(sympy.simplify_logic(skeleton, force=False))
    return best if size(best) < size(e) else e


COMPARISONS = Rules([(Pat(E.COMPARE, name="e"), _canonical_comparison)])


@functools.lru_cache(maxsize=256)
def simplify_mask(mask: E.Expr) -> E.Expr:
    """``mask`` with comparisons canonicalized and its boolean skeleton minimized."""
    return _logic(graph_rewrite(mask, COMPARISONS))


def simplify(program: Program) -> Program:
    """The Program with a simplified mask (the same object if nothing changed)."""
    if program.mask is None:
        return program
    mask = simplify_mask(program.mask)
    return program if mask == program.mask else replace(program, mask=mask)
