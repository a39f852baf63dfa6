"""Canonicalize masks (never used to generate code).

Two rewrites, each kept only when it makes the expression smaller:

- comparisons between integer expressions become ``linear form OP constant`` after
  moving everything to one side and collecting terms (``(q - 5) - (kv - 5) >= 0`` is
  ``q >= kv``), where no term can wrap (torch's integers do; ``(q << 60) > (kv << 60)``
  is not ``q > kv``); non-linear parts (``//``, ``%``, loads, ``abs``, ``min``, ``max``) are
  opaque atoms, so collecting terms is exact integer arithmetic on coefficients;
- the boolean skeleton (comparisons as atoms) goes through sympy's ``simplify_logic``
  when it has few atoms (``(a & b) | a`` is ``a``) and minimizing could shrink it.

A skeleton of ``&`` and ``|`` that reads each atom once (no ``~``, ``^`` or constants)
skips sympy when the answer is known without it: its function depends on every atom and
is unate in each, so sympy's two-level form holds every atom, in the polarity it has here,
and is no smaller unless the atoms' own rewrites are (see ``_cannot_shrink``). That covers
the common masks (causal, windows, documents, neighborhoods) and keeps sympy's import and
first use (about 0.3 s) off a user's first analysis.
"""

from __future__ import annotations

import functools
from dataclasses import replace

from .. import expr as E
from ..magnitude import no_wrap
from ..program import Program
from ..rewrite import Pat, Rules, graph_rewrite

MAX_LOGIC_ATOMS = 6
# Rearranging integer terms is exact only where nothing wraps: indices stay below 2**31.
INDEX_MAX = 2 ** 31
LOGIC = ("and", "or", "xor")


def size(e: E.Expr) -> int:
    return sum(1 for _ in E.walk(e))


def _combine(a: dict, b: dict, k: int = 1) -> dict:
    """``a + k * b`` for linear forms ``{atom number or None (the constant): coefficient}``."""
    out = dict(a)
    for key, coeff in b.items():
        out[key] = out.get(key, 0) + k * coeff
        if not out[key]:
            del out[key]
    return out


def _term_order(term: tuple) -> tuple:
    """Terms sorted by their printed text (``-2*a1`` < ``-a0`` < ``2*a0`` < ``a0``), the
    constant last: a fixed order, so equal forms build equal Exprs."""
    key, coeff = term
    if key is None:
        return True, str(coeff)
    name = f"a{key}"
    return False, name if coeff == 1 else f"-{name}" if coeff == -1 else f"{coeff}*{name}"


class _Atoms:
    """Numbered opaque atoms (``a0``, ``a1``...) for non-linear integer subexpressions."""

    def __init__(self):
        self.number: dict[E.Expr, int] = {}
        self.exprs: list[E.Expr] = []

    def atom(self, e: E.Expr) -> dict:
        if e not in self.number:
            self.number[e] = len(self.exprs)
            self.exprs.append(e)
        return {self.number[e]: 1}

    def linear(self, e: E.Expr) -> dict:
        if e.dtype != E.INT:
            return self.atom(e)
        if e.op == "const":
            return {None: int(e.arg)} if e.arg else {}
        if e.op in ("add", "sub"):
            return _combine(self.linear(e.src[0]), self.linear(e.src[1]), 1 if e.op == "add" else -1)
        if e.op == "neg":
            return _combine({}, self.linear(e.src[0]), -1)
        if e.op == "mul" and any(s.op == "const" for s in e.src):
            k, x = (e.src[0], e.src[1]) if e.src[0].op == "const" else (e.src[1], e.src[0])
            return _combine({}, self.linear(x), int(k.arg))
        return self.atom(e)

    def build(self, form: dict) -> E.Expr:
        """An Expr for a linear form."""
        out = None
        for key, coeff in sorted(form.items(), key=_term_order):
            piece = E.const(abs(coeff)) if key is None else self.exprs[key]
            if key is not None and abs(coeff) != 1:
                piece = E.binary("mul", E.const(abs(coeff)), piece)
            if out is None:
                out = E.unary("neg", piece) if coeff < 0 else piece
            else:
                out = E.binary("sub" if coeff < 0 else "add", out, piece)
        return out if out is not None else E.const(0)


def _linear_form(e: E.Expr, atoms: _Atoms):
    """``e`` (an integer comparison) as ``(body, const, kind, positive)`` meaning
    ``body >= const`` (kind "ge") or ``body == const`` (kind "eq"), negated when not
    ``positive``; ``body`` is a linear form whose first-named atom has a positive coefficient."""
    body = _combine(atoms.linear(e.src[0]), atoms.linear(e.src[1]), -1)
    const = -body.pop(None, 0)  # e: body OP const
    op = e.op
    if op in ("eq", "ne"):
        kind, positive = "eq", op == "eq"
    else:  # strict integer inequalities shift by one: x < c  <=>  ~(x >= c),  x > c  <=>  x >= c + 1
        kind = "ge"
        const, positive = {"ge": (const, True), "gt": (const + 1, True), "lt": (const, False), "le": (const + 1, False)}[op]
    if body and body[min(body, key=lambda i: f"a{i}")] < 0:
        body = {i: -c for i, c in body.items()}  # body >= c  <=>  -body <= -c  <=>  ~(-body >= -c + 1)
        if kind == "ge":
            const, positive = -const + 1, not positive
        else:
            const = -const
    return body, const, kind, positive


def _comparison(body: dict, const: int, kind: str, positive: bool, atoms: _Atoms) -> E.Expr:
    """The smallest Expr for ``body >= const`` / ``body == const`` (or their negation)."""
    if not body:
        truth = (0 >= const) if kind == "ge" else (0 == const)
        return E.const(truth == positive)
    op = {("ge", True): "ge", ("ge", False): "lt", ("eq", True): "eq", ("eq", False): "ne"}[kind, positive]
    candidates = [E.binary(op, atoms.build(body), E.const(int(const)))]
    pos = {i: c for i, c in body.items() if c > 0}
    neg = {i: -c for i, c in body.items() if c < 0}
    if neg and pos:
        candidates.append(E.binary(op, atoms.build(pos), atoms.build(_combine(neg, {None: const}))))
    return min(candidates, key=size)


def _canonical_comparison(e: E.Expr) -> E.Expr:
    if e.src[0].dtype != E.INT or e.src[1].dtype != E.INT or not no_wrap(e, INDEX_MAX):
        return e
    atoms = _Atoms()
    best = _comparison(*_linear_form(e, atoms), atoms)
    return best if size(best) < size(e) and no_wrap(best, INDEX_MAX) else e


def _logic(e: E.Expr) -> E.Expr:
    """Minimize the boolean skeleton; integer comparisons that differ only by negation or
    by an equivalent rearrangement become one atom."""
    lin = _Atoms()
    forms: dict = {}  # atom key of a comparison -> (body, const, kind)
    written: dict = {}  # atom key of a comparison -> (a comparison as written, its polarity)
    numbers: dict = {}  # atom key -> its number, in order of first use
    leaves: list = []  # (key, positive) for each atom occurrence
    tags: set = set()

    def skeleton(x: E.Expr) -> tuple:
        if x.op in LOGIC and x.dtype == E.BOOL:
            tags.add(x.op)
            return x.op, skeleton(x.src[0]), skeleton(x.src[1])
        if x.op == "invert" and x.dtype == E.BOOL:
            tags.add("invert")
            return "invert", skeleton(x.src[0])
        if x.op == "const" and x.dtype == E.BOOL:
            tags.add("const")
            return "const", bool(x.arg)
        if x.op in E.COMPARE and x.src[0].dtype == E.INT and x.src[1].dtype == E.INT and no_wrap(x, INDEX_MAX):
            body, const, kind, positive = _linear_form(x, lin)
            key = (tuple(sorted(body.items())), const, kind)
            forms.setdefault(key, (body, const, kind))
            written.setdefault(key, (x, positive))
        else:
            key, positive = x, True
        numbers.setdefault(key, len(numbers))
        leaves.append((key, positive))
        return "atom", key, positive

    def leaf(key, positive: bool) -> E.Expr:
        if key in forms:
            built = _comparison(*forms[key], positive, lin)
            if no_wrap(built, INDEX_MAX):
                return built
            x, polarity = written[key]  # the rearranged form could wrap: keep the user's
            return x if positive == polarity else E.unary("invert", x)
        return key if positive else E.unary("invert", key)

    tree = skeleton(e)
    if len(numbers) > MAX_LOGIC_ATOMS:
        return e
    if tags <= {"and", "or"} and len(leaves) == len(numbers) and _cannot_shrink(e, [leaf(*kp) for kp in leaves]):
        return e
    best = _minimized(tree, numbers, leaf)
    return best if size(best) < size(e) else e


def _cannot_shrink(e: E.Expr, leaves: list[E.Expr]) -> bool:
    """Whether sympy's form of ``e``, a read-once skeleton over ``leaves`` (each rewritten
    in e's polarity), is provably no smaller than ``e``: it holds every leaf and at least
    n - 1 logic nodes over the n leaves, nodes of no leaf when the leaves hold no logic."""
    nodes = {node for x in leaves for node in E.walk(x)}
    return not any(node.op in LOGIC for node in nodes) and len(nodes) + len(leaves) - 1 >= size(e)


def _minimized(tree: tuple, numbers: dict, leaf) -> E.Expr:
    """The skeleton ``tree`` through sympy's ``simplify_logic``, its atoms back as Exprs."""
    import sympy  # late import!  about 0.3 s, paid only by skeletons minimizing could shrink

    symbols = [sympy.Symbol(f"c{i}") for i in range(len(numbers))]
    keys = list(numbers)
    functions = {"and": sympy.And, "or": sympy.Or, "xor": sympy.Xor}

    def to_sym(t: tuple):
        if t[0] == "atom":
            s = symbols[numbers[t[1]]]
            return s if t[2] else sympy.Not(s)
        if t[0] == "const":
            return sympy.true if t[1] else sympy.false
        if t[0] == "invert":
            return sympy.Not(to_sym(t[1]))
        return functions[t[0]](to_sym(t[1]), to_sym(t[2]))

    def from_sym(s):
        if s is sympy.true or s is sympy.false:
            return E.const(bool(s))
        if isinstance(s, sympy.Symbol):
            return leaf(keys[symbols.index(s)], True)
        if isinstance(s, sympy.Not):
            if isinstance(s.args[0], sympy.Symbol):
                return leaf(keys[symbols.index(s.args[0])], False)
            return E.unary("invert", from_sym(s.args[0]))
        op = {sympy.And: "and", sympy.Or: "or", sympy.Xor: "xor"}[type(s)]
        args = sorted((from_sym(a) for a in s.args), key=str)
        out = args[0]
        for a in args[1:]:
            out = E.binary(op, out, a)
        return out

    return from_sym(sympy.simplify_logic(to_sym(tree), force=False))


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
