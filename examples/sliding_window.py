"""A1/A2: how much does a 4K sliding window buy over causal attention at 32K tokens?"""

from _common import LENGTH

import attncomp as ac
from attncomp.report import report

for spec in (ac.variants.causal(), ac.variants.sliding_window(LENGTH // 8)):
    print(report(spec, q_len=LENGTH, heads=16, check_size=128).summary(), "\n")
