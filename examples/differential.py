"""E1: differential attention as an einsum cascade. FlexAttention cannot express two
softmaxes; the Triton backend runs both online softmaxes in one pass over the keys."""

from _common import LENGTH

import attncomp as ac
from attncomp.report import report

spec = ac.variants.differential(lam=0.8)
print(spec)
print(report(spec, q_len=LENGTH, heads=16, check_size=128).summary())
