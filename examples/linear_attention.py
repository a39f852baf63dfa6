"""E3: causal linear attention. Written quadratically as a cascade; the Triton backend folds
full tiles into a carried state phi(K)^T V (Lightning Attention-2's chunked form)."""

from _common import LENGTH

import attncomp as ac
from attncomp.report import report

spec = ac.variants.causal_linear(feature="elu", normalize=True)
print(spec)
print(report(spec, q_len=LENGTH, heads=16, check_size=128).summary())
state_lines = [line.strip() for line in ac.compile(spec, backend="triton").source.splitlines() if "state" in line]
print("\n".join(state_lines[:3]))
