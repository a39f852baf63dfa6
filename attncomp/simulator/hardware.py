"""Hardware models: GPUs from their datasheets, and the CPU this program runs on, measured.

GPUs register from ``data/hardware.csv`` (one row per GPU, with its sources; the columns
``alias`` and ``generation`` name it for :func:`gpu` and pick its default kernel family):
a new GPU is a new row. Every number carries its source. Throughputs are per SM per clock, the unit the tile
cost model works in: tensor-core FLOPs (dense, not the 2:4-sparse headline), special
function (exp) results, and FP32/INT32 ALU operations (from the FP32 peak:
``fp32_tflops / (2 * sms * clock)``, an FMA being two FLOPs).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass

from ..errors import AttncompError


# How long a GPU holds its boost clock under full tensor load before the power controller
# settles at the base clock: one constant for every GPU, fitted by calibrate.py with the
# efficiency factors (stored in data/efficiency.json, which overrides this default); the rows
# that pin it down are the dense cuDNN runs that differ mainly in duration (H100: A11, 0.8 ms
# at 698 TFLOP/s, against A13/A14, 97-283 ms at 542-576 TFLOP/s).
POWER_WINDOW_S = 0.01


@dataclass(frozen=True)
class Hardware:
    name: str
    sms: int                    # streaming multiprocessors (compute units)
    clock_ghz: float            # tensor-core clock the dense peak is quoted at
    tensor_flops_per_clk: float # dense 16-bit tensor FLOPs per SM per clock
    fp8_factor: float | None    # fp8 tensor throughput over 16-bit; None: no fp8 tensor cores
    exp_per_clk: float          # special-function (exp) results per SM per clock
    alu_per_clk: float          # FP32/INT32 ALU ops per SM per clock
    hbm_gbps: float             # DRAM bandwidth
    l2_mb: float
    smem_kb: int                # shared memory per SM (occupancy)
    generation: str             # "ampere" | "hopper" | "blackwell" | "cdna3" | "cpu"
    launch_us: float = 4.0      # kernel launch and teardown, a typical measured floor
    source: str = ""
    partial_tile_factor: float | None = None  # measured partial over full tile cost (CPU; reported, not used:
    #                                           the mask's own ops price a partial tile, and match it)
    streaming_factor: float | None = None  # measured cost of a tile whose row's K/V sweep misses the cache (CPU)
    cache_kb: float | None = None          # the cache a row's K/V sweep must fit in for the cheaper tiles (CPU L2)
    base_clock_ghz: float | None = None   # datasheet base clock: what the GPU sustains at its power limit
    boost_clock_ghz: float | None = None  # datasheet maximum boost clock: what a short run gets
    tdp_w: float | None = None            # board power limit (W), for reports

    def run_seconds(self, seconds: float, power_window_s: float = POWER_WINDOW_S) -> float:
        """The time of a compute-bound run that takes ``seconds`` at the quoted tensor clock,
        under the clock the GPU really runs at (GPU Boost): a short run starts at the maximum
        boost clock, and the power controller brings a run that stays at full tensor load down
        to the base clock, the one the datasheet guarantees at the board power limit, with
        time constant ``power_window_s`` (:data:`POWER_WINDOW_S`). Averaged over a run of length ``T`` the clock is
        ``f(T) = base + (boost - base) * tau / T * (1 - exp(-T / tau))``, and the run's
        cycles ``C = seconds * clock`` satisfy ``T * f(T) = C`` (one root: ``T f(T)`` grows
        with ``T``). Without datasheet clocks (the CPU, MI300X) the quoted clock is kept.

        >>> h100 = gpu("h100")
        >>> round(h100.run_seconds(1e-6) / 1e-6, 3), round(h100.run_seconds(100.0) / 100.0, 3)  # boost / base
        (0.924, 1.151)
        """
        if not (self.base_clock_ghz and self.boost_clock_ghz) or seconds <= 0:
            return seconds
        cycles = seconds * self.clock_ghz
        base, extra, tau = self.base_clock_ghz, self.boost_clock_ghz - self.base_clock_ghz, power_window_s
        # Newton on g(t) = t f(t) - C, concave and increasing: from t = C / boost (left of the
        # root) every step stays left of it and converges monotonically
        t = cycles / self.boost_clock_ghz
        for _ in range(20):
            decay = math.exp(-t / tau)
            step = (t * base + extra * tau * (1 - decay) - cycles) / (base + extra * decay)
            t -= step
            if abs(step) <= 1e-12 * t:
                break
        return t

    @property
    def peak_tflops(self) -> float:
        return self.sms * self.tensor_flops_per_clk * self.clock_ghz * 1e9 / 1e12

    @property
    def hbm_bytes_per_clk_per_sm(self) -> float:
        return self.hbm_gbps * 1e9 / (self.clock_ghz * 1e9) / self.sms


def _alu(fp32_tflops: float, sms: int, clock: float) -> float:
    return fp32_tflops * 1e12 / (2 * sms * clock * 1e9)


HARDWARE_FILE = os.path.join(os.path.dirname(__file__), "data", "hardware.csv")
GPUS: dict[str, Hardware] = {}   # by short name (``h100``)
ALIASES: dict[str, str] = {}     # full datasheet name (``h100-sxm5``) -> short name


def register(hw: Hardware, alias: str) -> Hardware:
    """Make ``hw`` known to :func:`gpu` (and the CLI) as ``alias`` and by its full name."""
    GPUS[alias] = hw
    ALIASES[hw.name] = alias
    return hw


def from_datasheet(row: dict) -> Hardware:
    """A Hardware from a row of ``data/hardware.csv`` (datasheet units: TFLOP/s, GB/s).
    Per SM per clock: the tensor rate is the row's MMA rate, or the dense BF16 peak over
    SMs x clock where the vendor gives no such figure; fp8 runs at the fp8 over the BF16
    peak (None without fp8 tensor cores); ALU ops from the FP32 peak, an FMA being two FLOPs."""
    sms, clock, bf16 = int(row["sms"]), float(row["tensor_clock_ghz"]), float(row["bf16_dense_tflops"])
    mma = row["mma_flop_per_clk_per_sm_bf16"]
    tensor = int(mma) if mma else round(bf16 * 1e12 / (sms * clock * 1e9))
    fp8 = round(float(row["fp8_dense_tflops"]) / bf16, 2) if row["fp8_dense_tflops"] else None
    num = lambda key: float(row[key]) if row.get(key) else None
    return Hardware(row["name"], sms, clock, tensor, fp8, int(row["exp_per_clk_per_sm"]),
                    _alu(float(row["fp32_tflops"]), sms, clock), float(row["hbm_gbps"]), float(row["l2_mb"]),
                    int(row["smem_kb_per_sm"]), row["generation"], source=row["source"],
                    base_clock_ghz=num("base_clock_ghz"), boost_clock_ghz=num("boost_clock_ghz"), tdp_w=num("tdp_w"))


def _load(path: str) -> None:
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            register(from_datasheet(row), row["alias"])


_load(HARDWARE_FILE)


def gpu(name: str) -> Hardware:
    """A GPU model by short or full name (``h100``, ``h100-sxm5``; see :data:`GPUS`), or ``cpu``.

    >>> gpu("h100").name, gpu("h100-sxm5") is gpu("h100")
    ('h100-sxm5', True)
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key == "cpu":
        return this_cpu()
    if key not in GPUS:
        raise AttncompError(f"unknown hardware {name!r}; known: {', '.join(known())}")
    return GPUS[key]


def known() -> list[str]:
    """The names :func:`gpu` accepts (short names, and ``cpu`` for this machine, measured)."""
    return [*GPUS, "cpu"]


# --- the CPU this program runs on ------------------------------------------------------------

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "attncomp", "cpu.json")


def measure_cpu(threads: int | None = None) -> Hardware:
    """Measure this CPU as a Hardware: one "SM" per thread; matmul, exp and elementwise
    throughput and memory bandwidth from short torch runs (about a second)."""
    import torch

    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)

    def best(fn, repeat=5) -> float:
        fn()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    flops = 2 * n ** 3 / best(lambda: a @ b)
    # elementwise rates on a cache-resident tile (as inside a kernel), not limited by DRAM
    x = torch.randn(128 * 128 * threads)
    out = torch.empty_like(x)
    loops = 200

    def many(fn):
        return lambda: [fn() for _ in range(loops)]
    exps = loops * x.numel() / best(many(lambda: torch.exp(x, out=out)))
    alu = 2 * loops * x.numel() / best(many(lambda: torch.addcmul(x, x, x, out=out)))
    # a copy into memory already touched: a fresh allocation (clone) would also time the
    # page faults of first touch, 5x slower than the DRAM transfer itself on this machine
    big = torch.randn(1 << 25)
    dst = torch.empty_like(big).fill_(0)
    bandwidth = 2 * big.numel() * 4 / best(lambda: dst.copy_(big), repeat=3)
    clock = 1.0  # rates are per "clock" of 1 ns: per-thread throughputs in units per ns
    per = lambda rate: rate / threads / 1e9 / clock
    partial, streaming = tile_factors()
    return Hardware(f"cpu-{threads}t", threads, clock, per(flops), None, per(exps), per(alu), bandwidth / 1e9, 32,
                    2048, "cpu", launch_us=20.0, partial_tile_factor=partial, streaming_factor=streaming,
                    cache_kb=cache_bytes() / 1024,
                    source=f"measured on this machine ({threads} threads, torch {torch.__version__})")


def cache_bytes() -> int:
    """The per-core L2 cache of this CPU (Linux sysfs), 1 MiB where it cannot be read."""
    path = "/sys/devices/system/cpu/cpu0/cache/index2/size"
    try:
        with open(path) as fh:
            text = fh.read().strip().upper()
        return int(text[:-1]) * {"K": 1024, "M": 1024 ** 2}[text[-1]] if text[-1] in "KM" else int(text)
    except (OSError, ValueError, KeyError, IndexError):
        return 1 << 20


def tile_factors(length: int = 16384, block: int = 128, band: int = 8) -> tuple[float, float]:
    """Two per-tile costs of compiled FlexAttention on this CPU, measured on runs that differ in
    one thing each (per-row overheads amortized over ``band`` tiles per row):

    - partial over full: the same block-diagonal rows of ``band`` tiles, once as full tiles and
      once with a mask that makes every one of them partial;
    - streaming over cached: all-full rows of ``length / block`` tiles, whose K/V sweep
      (``length x d x 8`` bytes per head) is larger than the L2 cache, against the band's rows,
      whose sweep fits: per tile, the cost of reading K/V from further out.

    (An earlier version compared one partial tile per row with whole full rows, and so charged
    each partial tile the row's fixed cost: 2-4x where the tiles differ by ~1.3x.)
    """
    import torch
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    attend = torch.compile(flex_attention, dynamic=False)
    q, k, v = (torch.randn(1, 2, length, 64) for _ in range(3))
    nq = length // block
    rows = torch.arange(nq, dtype=torch.int32)
    band_idx = ((rows // band) * band)[:, None] + torch.arange(band, dtype=torch.int32)
    band_idx = torch.cat([band_idx, torch.zeros(nq, nq - band, dtype=torch.int32)], 1).reshape(1, 1, nq, nq)
    none, some, every = (torch.full((1, 1, nq), n, dtype=torch.int32) for n in (0, band, nq))
    all_idx = torch.arange(nq, dtype=torch.int32).expand(1, 1, nq, nq).contiguous()

    def checkerboard(b, h, q_idx, kv_idx):
        return (q_idx + kv_idx) % 2 == 0
    # distinct buffers for partial and full lists (BlockMask aliases nothing)
    full = BlockMask.from_kv_blocks(none, band_idx.clone(), some, band_idx.clone(), BLOCK_SIZE=block)
    partial = BlockMask.from_kv_blocks(some, band_idx.clone(), none, band_idx.clone(), BLOCK_SIZE=block,
                                       mask_mod=checkerboard)
    dense = BlockMask.from_kv_blocks(none, all_idx.clone(), every, all_idx.clone(), BLOCK_SIZE=block)

    def per_tile(bm, tiles) -> float:
        attend(q, k, v, block_mask=bm)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            attend(q, k, v, block_mask=bm)
            times.append(time.perf_counter() - start)
        return min(times) / tiles
    banded = per_tile(full, nq * band)
    return max(1.0, per_tile(partial, nq * band) / banded), max(1.0, per_tile(dense, nq * nq) / banded)


def this_cpu(threads: int | None = None, refresh: bool = False) -> Hardware:
    """The measured CPU model, cached in ~/.cache/attncomp/cpu.json per thread count."""
    import torch

    threads = threads or torch.get_num_threads()
    cache = {}
    if os.path.exists(CACHE) and not refresh:
        with open(CACHE) as fh:
            cache = json.load(fh)
    # model 2: the tile factors measured apart (issue 23); 3: bandwidth without page faults
    key = f"{threads} threads, model 3"
    if key not in cache:
        cache[key] = asdict(measure_cpu(threads))
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        with open(CACHE, "w") as fh:
            json.dump(cache, fh, indent=1)
    return Hardware(**cache[key])
