"""Passes over Programs. Each returns the same object when nothing changed.

- :func:`hoist_masks`: ``where(c, score, -inf)`` in a softmax score mod becomes mask ``c``
- :func:`fold`: parameters and integer/boolean constants folded, exact identities applied
- :func:`simplify`: sympy-canonical comparisons and boolean skeleton of the mask
"""

from ..program import Program
from .fold import fold, fold_expr
from .hoist import hoist_masks
from .simplify import simplify, simplify_mask

__all__ = ["fold", "fold_expr", "hoist_masks", "optimize", "simplify", "simplify_mask"]


def optimize(program: Program, fold_params: bool = True) -> Program:
    """All passes in order: hoist, fold (with parameters, by default), simplify, fold.

    >>> import attncomp as ac
    >>> from torch.nn.attention.flex_attention import and_masks
    >>> causal = lambda b, h, q_idx, kv_idx: q_idx >= kv_idx
    >>> print(optimize(ac.attention(mask=and_masks(causal, causal))).mask)
    m >= n
    """
    return fold(simplify(fold(hoist_masks(program), fold_params)), fold_params)
