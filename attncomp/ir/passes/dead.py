"""Dead-equation elimination: equations whose results never reach the output are dropped,
so no backend computes them and the simulator does not cost them."""

from __future__ import annotations

from dataclasses import replace

from ..program import Program


def eliminate_dead(program: Program) -> Program:
    """``program`` without the equations whose results never reach the output (the same
    object if there are none).

    >>> import attncomp as ac
    >>> spec = ac.cascade('''
    ...     S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
    ...     T[b,h,m,n] = exp(S)
    ...     O[b,h,m,e] = softmax[n](S * scale) * V[b,h,n,e]
    ... ''')
    >>> [e.name for e in eliminate_dead(spec).eqns]
    ['S', 'O']
    """
    live = program.dataflow().live()
    eqns = tuple(e for e in program.eqns if e.name in live)
    return program if len(eqns) == len(program.eqns) else replace(program, eqns=eqns)
