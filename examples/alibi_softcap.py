"""C1 + C2 on A2: a sliding window with ALiBi slopes and tanh soft-capping, composed from
library pieces; the score mods cost exp/ALU work per tile, which the simulator counts."""

from _common import LENGTH

import attncomp as ac
from attncomp.report import report

window = ac.variants.sliding_window(LENGTH // 4)
with_alibi = ac.attention(mask=window, score=ac.variants.alibi(heads=16), name="window+alibi")
with_cap = ac.attention(mask=window, score=ac.variants.softcap(30.0), name="window+softcap")
for spec in (window, with_alibi, with_cap):
    est = ac.simulate(spec, "h100", heads=16, q_len=LENGTH)
    print(f"{spec.name:<16} H100 {1e3 * est.time_s:7.3f} ms  speedup {est.speedup:.2f}x  "
          f"exp share {100 * est.breakdown['exp'] / est.time_s:.0f}%")
print()
print(report(with_alibi, q_len=LENGTH, heads=16, check_size=128).summary())
