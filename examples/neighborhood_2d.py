"""B1: 2-D neighborhood attention on a 128 x 128 image, with tokens laid out tile-major so
that each 128-token block is a 16 x 8 patch of the image."""

from _common import FAST

import attncomp as ac
from attncomp.report import report

side = 64 if FAST else 128
spec = ac.variants.neighborhood((side, side), window=21, tile=(16, 8))
rep = report(spec, q_len=side * side, heads=24, check_size=256)
print(rep.summary())
print(rep.layout.show(max_cells=48))
