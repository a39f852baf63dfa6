"""``Program``: an ordered cascade of einsum equations under one mask.

In the spirit of FuseMax's cascades of extended einsums (Nayak et al., MICRO 2024), a
Program is a list of equations ``T[letters] = rhs`` over named tensors. Every index letter
on the right but not on the left is summed (Einstein convention: per additive term, so
in ``S = Q * K * scale + bias[h, m - n]`` only the product sums over ``d``);
``softmax[n]``, ``max[n]`` and ``sum[n]`` reduce over ``n`` explicitly.

The mask restricts the ``(b, h, m, n)`` iteration space of the whole cascade: pairs where
it is false do not exist. A selection stage (:mod:`attncomp.ir.selection`: MoBA, NSA,
Quest) restricts it further to the key blocks it chooses from the data. They contribute nothing to any sum or reduction over ``n`` (for
softmax that equals a ``-inf`` score; for sigmoid or linear attention a zero weight), and
a row with no pair left produces 0.

Standard softmax attention (``ac.attention``) is the Program::

    input Q[b,h,m,d], K[b,h,n,d], V[b,h,n,e]
    S[b,h,m,n] = Q * K
    P[b,h,m,n] = softmax[n](score_mod(S * scale))
    O[b,h,m,e] = P * V
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import CascadeError, api_boundary
from .dataflow import Dataflow, dataflow
from .expr import Expr, TensorDecl, param, substitute, walk
from .selection import Selection


@dataclass(frozen=True)
class InputDecl:
    """A big input tensor of the cascade (``Q[b,h,m,d]``), bound positionally at call time."""

    name: str
    letters: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name}[{','.join(self.letters)}]"


@dataclass(frozen=True)
class Eqn:
    """``name[letters] = rhs``; ``line`` is where it came from in cascade text (0 if built)."""

    name: str
    letters: tuple[str, ...]
    rhs: Expr
    line: int = field(default=0, compare=False)

    def format(self, bare: dict[str, tuple[str, ...]] | None = None) -> str:
        from .printer import format_expr

        return f"{self.name}[{','.join(self.letters)}] = {format_expr(self.rhs, bare=bare)}"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True)
class Program:
    """A verified attention cascade: inputs, equations, an optional mask, named params.

    ``bindings`` holds tensors captured by traced functions (their default values at call
    time); ``name`` and ``source`` (where the user defined it) are for messages only.

    >>> import attncomp as ac
    >>> p = ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, name="causal")
    >>> print(p.mask)
    m >= n
    >>> [e.name for e in p.eqns], p.output
    (['S', 'P', 'O'], 'O')
    """

    inputs: tuple[InputDecl, ...]
    eqns: tuple[Eqn, ...]
    mask: Expr | None = None
    selection: Selection | None = None
    name: str = field(default="program", compare=False)
    bindings: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)
    source: Any = field(default=None, compare=False, repr=False)

    # --- derived views -------------------------------------------------------------------

    @property
    def output(self) -> str:
        return self.eqns[-1].name

    @property
    def exprs(self) -> tuple[Expr, ...]:
        return tuple(e.rhs for e in self.eqns) + ((self.mask,) if self.mask is not None else ()) + \
            (self.selection.exprs if self.selection is not None else ())

    @property
    def params(self) -> dict[str, int | float | None]:
        """Named scalar parameters and their values, in order of first use."""
        return {n.arg[0]: n.arg[1] for e in self.exprs for n in walk(e) if n.op == "param"}

    @property
    def tensors(self) -> dict[str, TensorDecl]:
        """Runtime tensors read by the mask and the equations, in order of first use."""
        return {n.arg.name: n.arg for e in self.exprs for n in walk(e) if n.op == "load"}

    def input(self, name: str) -> InputDecl:
        return next(i for i in self.inputs if i.name == name)

    def eqn(self, name: str) -> Eqn:
        return next(e for e in self.eqns if e.name == name)

    def defined_letters(self) -> dict[str, tuple[str, ...]]:
        """The letters each cascade tensor was declared or defined with."""
        out = {i.name: i.letters for i in self.inputs}
        out.update({e.name: e.letters for e in self.eqns})
        return out

    def dataflow(self) -> Dataflow:
        """The dataflow DAG: what each equation (and the mask) reads, and the orders to
        walk it in (see :mod:`attncomp.ir.dataflow`)."""
        return dataflow(self)

    # --- rewriting -------------------------------------------------------------------------

    @api_boundary
    def with_params(self, **values: int | float) -> Program:
        """A copy with parameter values replaced (``spec.with_params(window=512)``)."""
        current = self.params
        unknown = sorted(set(values) - set(current))
        if unknown:
            raise CascadeError(f"no parameter(s) {unknown}; it has {sorted(current)}", variant=self.name)
        mapping = {param(k, current[k]): param(k, v) for k, v in values.items()}
        new_eqns = tuple(replace(e, rhs=substitute(e.rhs, mapping)) for e in self.eqns)
        new_mask = substitute(self.mask, mapping) if self.mask is not None else None
        selection = self.selection.substitute(mapping) if self.selection is not None else None
        return replace(self, eqns=new_eqns, mask=new_mask, selection=selection)

    def __str__(self) -> str:
        from .printer import format_expr

        lines = [f"# attncomp program: {self.name}"]
        lines += [f"param {k}: {type(v).__name__} = {v!r}" for k, v in self.params.items() if v is not None]
        lines += [f"tensor {t}" for t in self.tensors.values()]
        lines.append("input " + ", ".join(str(i) for i in self.inputs))
        if self.mask is not None:
            lines.append(f"mask[b,h,m,n] = {format_expr(self.mask)}")
        if self.selection is not None:
            lines.append(self.selection.format())
        bare = self.defined_letters()
        lines += [e.format(bare) for e in self.eqns]
        return "\n".join(lines) + "\n"
