"""Passes over Programs. Each returns the same object when nothing changed.

- :func:`normalize_softmax`: softmax attention however it is spelled, in one normal form
- :func:`eliminate_dead`: equations whose results never reach the output are dropped
- :func:`hoist_masks`: ``where(c, score, -inf)`` in a softmax score mod becomes mask ``c``
- :func:`fold`: parameters and integer/boolean constants folded, exact identities applied
- :func:`simplify`: canonical comparisons and (with sympy) boolean skeleton of the mask
"""

from ..program import Program
from .dead import eliminate_dead
from .fold import fold, fold_expr
from .hoist import hoist_masks
from .normal import normalize_softmax
from .simplify import simplify, simplify_mask

__all__ = ["eliminate_dead", "fold", "fold_expr", "hoist_masks", "normalize_softmax", "optimize", "simplify",
           "simplify_mask"]


def optimize(program: Program, fold_params: bool = True) -> Program:
    """All passes in order: softmax normal form, dead equations, hoist, fold (with
    parameters, by default), simplify, fold.

    >>> import attncomp as ac
    >>> from torch.nn.attention.flex_attention import and_masks
    >>> causal = lambda b, h, q_idx, kv_idx: q_idx >= kv_idx
    >>> print(optimize(ac.attention(mask=and_masks(causal, causal))).mask)
    m >= n
    """
    return fold(simplify(fold(hoist_masks(eliminate_dead(normalize_softmax(program))), fold_params)), fold_params)
