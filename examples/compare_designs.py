"""Three designs of the same idea, compared by predicted speedup before writing a kernel:
2-D neighborhood attention (NATTEN), strided NA (GNA) and blocked attention, on a 128 x 128
image in a tile-major token order whose 16 x 8 tiles are the kernel's 128-token blocks."""

from _common import FAST

import attncomp as ac

side = 64 if FAST else 128
window = (48, 40)  # with stride = tile, window//2 - stride//2 is a multiple of the tile: aligned
designs = {
    "neighborhood (NA)": ac.variants.neighborhood((side, side), window=window, tile=(16, 8)),
    "strided NA (GNA)": ac.variants.neighborhood((side, side), window=window, stride=(16, 8), tile=(16, 8)),
    "blocked": ac.variants.neighborhood((side, side), window=window, stride=window, tile=(16, 8)),
}
print(f"{'design':<20}{'FLOP ratio':>12}{'tile ratio':>12}{'H100':>10}{'B200':>10}")
for name, spec in designs.items():
    layout = ac.analyze(spec, side * side, block=(128, 128))
    h100 = ac.simulate(spec, "h100", heads=24, q_len=side * side, layout=layout)
    b200 = ac.simulate(spec, "b200", heads=24, q_len=side * side, layout=layout)
    print(f"{name:<20}{h100.flop_ratio:>11.1f}x{h100.tile_ratio:>11.1f}x{h100.speedup:>9.1f}x{b200.speedup:>9.1f}x")
print("\nSame FLOPs per query, different tile alignment: the strided and blocked designs leave no partial tiles.")
