"""Lowering a Program to a kernel plan: which attention terms share the KV loop, and the
epilogue that combines them. The one description of what a generated kernel does: the
Triton backend generates its code from it and the simulator costs it, so a new lowering
is costed without touching the simulator.

A term is one score contraction ``S = phi_q(Q) * phi_k(K)`` (summed over the head dim)
turned into weights over ``n`` and contracted with ``V``:

- ``softmax``: ``softmax[n](f(S)) * V`` — an online softmax (running max ``m_i``, sum
  ``l_i``, rescaled ``acc``), FlashAttention's loop; a sink logit (``softmax[n](f(S),
  sink)``) is folded into ``m_i`` and ``l_i`` once, after the loop;
- ``weighted``: ``g(S) * V`` with ``g`` elementwise and no normalizer (sigmoid attention):
  masked weights are 0, no running state;
- ``linear``: ``S * V`` with ``S`` bilinear (linear attention), run chunked as in
  Lightning Attention-2: a first kernel writes each key block's state ``phi(K_j)^T V_j``
  (and ``sum phi(K_j)`` for a normalizer), a prefix sum over blocks follows, and a query
  block adds ``P[b] - P[a]`` for each run ``[a, b)`` of its full tiles (never visiting
  them); partial tiles use the masked quadratic form.

Several terms run in one pass over the key blocks (differential attention: two softmaxes).
The epilogue is an elementwise expression of the terms' outputs (``acc0``, ``acc1``),
row sums of weights (``rowsum0``) and gates ``X W`` computed from extra inputs
(``gate0``): ``O = (P1 - lam P2) V`` is ``acc0 - LAM * acc1``, gated attention is
``acc0 * sigmoid(gate0)``. Anything else raises an error naming the equation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnsupportedError
from . import expr as E
from .program import Eqn, Program
from .selection import Selection

BHMN, BHMD, BHND, BHNE, BHME, BHM = ("b", "h", "m", "n"), ("b", "h", "m", "d"), ("b", "h", "n", "d"), \
    ("b", "h", "n", "e"), ("b", "h", "m", "e"), ("b", "h", "m")
X = E.Expr("var", (), "x", E.FLOAT)    # the element a feature map applies to
QK = E.Expr("var", (), "qk", E.FLOAT)  # the raw score q . k of a term


@dataclass(frozen=True)
class Scores:
    """``S[b,h,m,n] = phi_q(Q[b,h,m,d]) * phi_k(K[b,h,n,d])``; a None map is the identity."""

    q: str
    k: str
    phi_q: E.Expr | None = None
    phi_k: E.Expr | None = None


@dataclass
class Term:
    kind: str                 # "softmax" | "weighted" | "linear"
    scores: Scores
    logits: E.Expr            # softmax: the score in terms of QK; weighted: the weight
    rowsum: bool = False      # also accumulate the row sums of the weights
    sink: E.Expr | None = None  # softmax: a logit per row (of b, h, m) in the normalizer, no value


@dataclass
class KernelPlan:
    terms: list[Term]
    v: str
    output: E.Expr                     # epilogue over acc{i}, rowsum{i}, gate{j}, params, b, h, m
    gates: list[tuple[str, str]] = field(default_factory=list)  # (X[b,m,c], W[h,c,e])
    mask: E.Expr | None = None
    selection: Selection | None = None  # partial tiles also test the data's choice of key block

    @property
    def inputs(self) -> list[str]:
        names = []
        for t in self.terms:
            names += [t.scores.q, t.scores.k]
        names.append(self.v)
        for x, w in self.gates:
            names += [x, w]
        return list(dict.fromkeys(names))


class _Lowering:
    def __init__(self, program: Program):
        self.program = program
        self.inputs = {i.name: i.letters for i in program.inputs}
        self.scores: dict[str, Scores] = {}
        self.weights: dict[str, tuple[str, str, E.Expr]] = {}  # name -> (kind, scores name, logits)
        self.sinks: dict[str, E.Expr] = {}                       # softmax weights name -> its sink logit
        self.term_of: dict[str, int] = {}                        # weights name -> term index
        self.terms: list[Term] = []
        self.values: dict[str, E.Expr] = {}                      # epilogue-level tensors
        self.gates: list[tuple[str, str]] = []
        self.v: str | None = None

    def blocked(self, eqn: Eqn, why: str) -> UnsupportedError:
        return UnsupportedError(
            f"the Triton backend cannot lower `{eqn.format(self.program.defined_letters())}`: {why}",
            hint="It lowers softmax, weighted (e.g. sigmoid) and linear attention terms over one key loop, "
                 "combined elementwise; use backend='reference' for other cascades",
            variant=self.program.name, location=self.program.source)

    # --- pieces ----------------------------------------------------------------------------
    def feature(self, f: E.Expr, letters: tuple[str, ...]) -> tuple[str, E.Expr | None] | None:
        """``f`` is an elementwise map of one input with exactly ``letters``: (input, map of x)."""
        refs = [n for n in E.walk(f) if n.op == "ref"]
        names = {r.arg for r in refs}
        if len(names) != 1 or any(tuple(s.arg for s in r.src) != letters for r in refs):
            return None
        (name,) = names
        if self.inputs.get(name) != letters or E.letters_of(f) != set(letters):
            return None
        if any(n.op in E.REDUCTIONS or n.op == "load" for n in E.walk(f)):
            return None
        phi = E.substitute(f, {E.ref(name, letters): X})
        return name, (None if phi == X else phi)

    def as_scores(self, eqn: Eqn) -> Scores | None:
        rhs = eqn.rhs
        if eqn.letters != BHMN or rhs.op != "mul":
            return None
        for a, b in (rhs.src, rhs.src[::-1]):
            fq, fk = self.feature(a, BHMD), self.feature(b, BHND)
            if fq and fk:
                return Scores(fq[0], fk[0], fq[1], fk[1])
        return None

    def single_scores(self, expr: E.Expr) -> str | None:
        names = {n.arg for n in E.walk(expr) if n.op == "ref"}
        if len(names) == 1 and next(iter(names)) in self.scores:
            ref_node = next(n for n in E.walk(expr) if n.op == "ref")
            if tuple(s.arg for s in ref_node.src) == BHMN:
                return next(iter(names))
        return None

    def term(self, name: str, rowsum: bool = False) -> int:
        """The term for weights ``name`` (created on first use)."""
        if name not in self.term_of:
            kind, sname, logits = self.weights[name]
            sc = self.scores[sname]
            if kind == "weighted" and logits == QK and not (sc.phi_k is not None and E.letters_of(sc.phi_k) - {"x"}):
                # chunked: phi(K) is summed into per-key-block states shared by every query
                # head of a group, so the key map must not read an index (b, h, n, d)
                kind = "linear"
            self.term_of[name] = len(self.terms)
            self.terms.append(Term(kind, sc, logits, sink=self.sinks.get(name)))
        i = self.term_of[name]
        self.terms[i].rowsum |= rowsum
        return i

    def weights_ref(self, node: E.Expr) -> str | None:
        if node.op == "ref" and tuple(s.arg for s in node.src) == BHMN:
            if node.arg in self.scores:  # raw scores used as weights: linear attention
                self.weights.setdefault(node.arg, ("weighted", node.arg, QK))
            if node.arg in self.weights:
                return node.arg
        return None

    def inline_weights(self, expr: E.Expr) -> str | None:
        """Weights written inline (``sigmoid(S * scale) * V``, ``softmax[n](S1) - ...``)."""
        if expr.op == "softmax" and expr.arg == "n":
            sname, kind, body = self.single_scores(expr.src[0]), "softmax", expr.src[0]
        elif not any(n.op in E.REDUCTIONS for n in E.walk(expr)):
            sname, kind, body = self.single_scores(expr), "weighted", expr
        else:
            return None
        if sname is None:
            return None
        name = f"<{kind} {len(self.weights)}>"
        self.weights[name] = (kind, sname, E.substitute(body, {E.ref(sname, BHMN): QK}))
        if kind == "softmax" and len(expr.src) == 2:
            self.sinks[name] = expr.src[1]
        return name

    def linear_in_weights(self, expr: E.Expr) -> dict[str, E.Expr | None] | None:
        """``expr`` as a sum of coefficient * weights (coefficient None: 1), coefficients
        free of n and of weights."""
        name = self.weights_ref(expr)
        if name is not None:
            return {name: None}
        if not any(n.op == "ref" for n in E.walk(expr)):
            return None
        if expr.op in ("add", "sub"):
            a, b = (self.linear_in_weights(s) for s in expr.src)
            if a is None or b is None:
                return None
            out = dict(a)
            for k, v in b.items():
                v = v if expr.op == "add" else _neg(v)
                out[k] = v if k not in out else E.binary("add", _one(out[k]), _one(v))
            return out
        if expr.op == "neg":
            inner = self.linear_in_weights(expr.src[0])
            return None if inner is None else {k: _neg(v) for k, v in inner.items()}
        if expr.op in ("mul", "truediv"):
            a, b = expr.src
            for w, c in ((a, b), (b, a)) if expr.op == "mul" else ((a, b),):
                if not any(n.op == "ref" for n in E.walk(c)) and "n" not in E.letters_of(c):
                    inner = self.linear_in_weights(w)
                    if inner is not None:
                        return {k: E.binary(expr.op, _one(v), c) if v is not None or expr.op == "truediv" else c
                                for k, v in inner.items()}
        inline = self.inline_weights(expr)
        return {inline: None} if inline is not None else None

    def epilogue(self, expr: E.Expr) -> E.Expr | None:
        """``expr`` with epilogue-level refs replaced by their expressions, if it is one."""
        mapping = {}
        for node in E.walk(expr):
            if node.op == "ref":
                if node.arg not in self.values:
                    return None
                mapping[node] = self.values[node.arg]
            if node.op in E.REDUCTIONS:
                return None
        return E.substitute(expr, mapping)

    # --- equations -------------------------------------------------------------------------
    def eqn(self, eqn: Eqn) -> None:
        rhs, letters = eqn.rhs, eqn.letters
        sc = self.as_scores(eqn)
        if sc is not None:
            self.scores[eqn.name] = sc
            return
        if letters == BHMN:
            if rhs.op == "softmax" and rhs.arg == "n":
                sname = self.single_scores(rhs.src[0])
                if sname is None:
                    raise self.blocked(eqn, "the softmax must be of an expression of one score contraction S = Q * K")
                self.weights[eqn.name] = ("softmax", sname, E.substitute(rhs.src[0], {E.ref(sname, BHMN): QK}))
                if len(rhs.src) == 2:
                    self.sinks[eqn.name] = rhs.src[1]
                return
            sname = self.single_scores(rhs)
            if sname is not None and not any(n.op in E.REDUCTIONS for n in E.walk(rhs)):
                self.weights[eqn.name] = ("weighted", sname, E.substitute(rhs, {E.ref(sname, BHMN): QK}))
                return
            raise self.blocked(eqn, "a [b,h,m,n] tensor must be a score contraction, a softmax of one, or an "
                                    "elementwise function of one")
        if letters == BHME and rhs.op == "mul" and all(s.op == "ref" and s.arg in self.inputs for s in rhs.src):
            (xn, xl), (wn, wl) = ((s.arg, tuple(v.arg for v in s.src)) for s in rhs.src)
            if (xl, wl) == (("b", "m", "c"), ("h", "c", "e")):
                self.values[eqn.name] = E.var(f"gate{len(self.gates)}")
                self.gates.append((xn, wn))
                return
        if "n" in E.letters_of(rhs) or (rhs.op == "reduce_sum" and rhs.arg == "n"):
            self.contraction(eqn)
            return
        value = self.epilogue(rhs)
        if value is None or letters not in (BHME, BHM):
            reduced = sorted({n.arg for n in E.walk(rhs) if n.op in E.REDUCTIONS})
            raise self.blocked(eqn, "after the key loop only elementwise expressions of earlier [b,h,m,e] or "
                                    "[b,h,m] results can follow" + (f"; this one reduces over {', '.join(reduced)} "
                                    f"(the kernel does not reduce across the value dimension)" if reduced else ""))
        self.values[eqn.name] = value

    def contraction(self, eqn: Eqn) -> None:
        """A sum over n: weights times V (-> acc{i}) or row sums of weights (-> rowsum{i})."""
        rhs, letters = eqn.rhs, eqn.letters
        if letters == BHM:
            body = rhs.src[0] if rhs.op == "reduce_sum" else rhs
            name = self.weights_ref(body)
            if name is None or self.weights[name][0] == "softmax":
                raise self.blocked(eqn, "a row sum must be of weights g(S) or of S itself")
            self.values[eqn.name] = E.var(f"rowsum{self.term(name, rowsum=True)}")
            return
        factors = _factors(rhs)
        v_factors = [f for f in factors if f.op == "ref" and tuple(s.arg for s in f.src) == BHNE
                     and self.inputs.get(f.arg) == BHNE]
        if letters != BHME or len(v_factors) != 1:
            raise self.blocked(eqn, "a sum over n must be (weights) * V[b,h,n,e]")
        if self.v not in (None, v_factors[0].arg):
            raise self.blocked(eqn, "all terms must share one V")
        self.v = v_factors[0].arg
        rest = [f for f in factors if f is not v_factors[0]]
        weights = rest[0]
        for f in rest[1:]:
            weights = E.binary("mul", weights, f)
        coeffs = self.linear_in_weights(weights) if rest else None
        if coeffs is None:
            raise self.blocked(eqn, "the weights multiplying V must be a linear combination of softmax or weight "
                                    "tensors with coefficients that do not depend on n")
        out = None
        for name, coeff in coeffs.items():
            acc = E.var(f"acc{self.term(name)}")
            negated = coeff.src[0] if coeff is not None and coeff.op == "neg" else \
                E.const(-coeff.arg) if coeff is not None and coeff.op == "const" and coeff.arg < 0 else None
            if negated is not None and out is not None:
                out = E.binary("sub", out, acc if _is_one(negated) else E.binary("mul", negated, acc))
                continue
            piece = acc if coeff is None else E.binary("mul", coeff, acc)
            out = piece if out is None else E.binary("add", out, piece)
        self.values[eqn.name] = out


def _one(coeff: E.Expr | None) -> E.Expr:
    return E.const(1.0) if coeff is None else coeff


def _is_one(coeff: E.Expr) -> bool:
    return coeff.op == "const" and coeff.arg == 1.0


def _neg(coeff: E.Expr | None) -> E.Expr:
    return E.unary("neg", _one(coeff))


def _factors(expr: E.Expr) -> list[E.Expr]:
    if expr.op == "mul":
        return _factors(expr.src[0]) + _factors(expr.src[1])
    return [expr]


def lower(program: Program) -> KernelPlan:
    """The kernel plan of ``program``, or an UnsupportedError naming the blocking equation."""
    lowering = _Lowering(program)
    for eqn in program.eqns:
        lowering.eqn(eqn)
    last = program.eqns[-1]
    output = lowering.values.get(last.name)
    if output is None or last.letters != BHME or not lowering.terms:
        raise lowering.blocked(last, "the output must be a [b,h,m,e] result of the key loop")
    return KernelPlan(lowering.terms, lowering.v, output, lowering.gates, program.mask, program.selection)
