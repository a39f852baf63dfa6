"""The cost model: tile work on a GPU, CTAs scheduled on SMs, a time estimate.

Per tile (cycles on one SM): tensor work ``FLOPs / (peak per SM x efficiency)``, the
special-function and ALU work of the maps, and the K/V bytes over the SM's share of HBM
bandwidth times L2 reuse (concurrent CTAs of the same head read each K/V tile once).
Tensor and non-tensor work overlap as the kernel family allows (FA3/FA4 ping-pong
warpgroups hide softmax under the matmuls; a plain Triton kernel serializes part of it),
memory is pipelined under compute, and every tile pays a small fixed loop cost. A partial
tile adds the mask's ALU work. A CTA adds a prologue (DRAM latency, loading its Q tile
and first K/V tile) and an epilogue (storing its output).

The one fitted number is an efficiency factor on the tensor-core peak per (hardware,
kernel family, dtype, head-dim class), fitted on published dense measurements only
(``calibrate.py``); everything else is datasheet numbers and the Program's own work.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import AttncompError
from .costs import TileWork
from .hardware import POWER_WINDOW_S, Hardware

DRAM_LATENCY_US = 0.8   # load-to-use latency of HBM (microbenchmarks put H100/A100 at ~0.5-0.8 us)
TILE_OVERHEAD_CLK = 64  # loop bookkeeping, barriers and pipeline hand-off per tile
EXP_POLY_OPS = 8        # FMA-unit ops of a software exp2 (range reduction + cubic polynomial, FA4)
SMEM_BYTES_PER_CLK = 128  # shared-memory bandwidth per SM (Hopper; unchanged on Blackwell per FA4)


@dataclass(frozen=True)
class Family:
    """How a family of attention kernels uses the machine."""

    name: str
    overlap: float             # share of non-tensor work hidden under tensor work (1: warp-specialized)
    persistent: bool           # a CTA's prologue overlaps the previous CTA's epilogue
    blocks: dict = field(default_factory=lambda: {64: (128, 128), 128: (128, 128), 256: (128, 64)})
    mask_partial_rows: bool = False  # masks every tile of a query block that has a partial one (NATTEN FNA)
    base: str | None = None    # family whose efficiency applies when this one has no dense measurement
    order: str = "launch"      # CTA order: "launch" or "longest-first" (persistent schedulers)
    masked_overlap: float = 0.0  # overlap left on masked tiles: the mask sits between the softmax and
    #                              the next matmul, so warp-specialized pipelines serialize there
    exp_emulation: bool = False  # part of the exps as polynomials on the FMA units (FlashAttention-4)
    hoists_mask: bool = True   # per-row / per-column parts of the mask computed once per row / column
    split_kv: bool = True      # a split-KV path for decode shapes (FlashDecoding, flex_decoding)

    def block(self, head_dim: int) -> tuple[int, int]:
        for d in sorted(self.blocks):
            if head_dim <= d:
                return self.blocks[d]
        return self.blocks[max(self.blocks)]


FAMILIES = {
    # FlashAttention-3 (Shah et al., 2024): warp-specialized ping-pong on Hopper; 192x128 tiles at d<=64
    "fa3": Family("fa3", 1.0, True, {64: (192, 128), 128: (128, 128), 256: (128, 80)}, order="longest-first"),
    # FlashAttention-4 on Blackwell (tcgen05; exps partly emulated on FMA units): same structure
    "fa4": Family("fa4", 1.0, True, {64: (128, 128), 128: (128, 128), 256: (128, 64)}, base="cudnn",
                  order="longest-first", exp_emulation=True),
    "cudnn": Family("cudnn", 1.0, True, order="longest-first"),
    # FlashAttention-2 and Triton kernels (tutorial, FlexAttention, attncomp's): softmax and matmuls
    # interleave within a warp, so only part of the non-tensor work hides
    "fa2": Family("fa2", 0.5, False, {64: (128, 128), 128: (128, 64), 256: (64, 64)}, base="triton-tutorial-fa2"),
    "triton-tutorial-fa2": Family("triton-tutorial-fa2", 0.5, False, {64: (128, 64), 128: (128, 64), 256: (64, 64)}),
    "flex": Family("flex", 0.5, False, {64: (128, 64), 128: (128, 64), 256: (64, 64)}, base="triton-tutorial-fa2"),
    # NATTEN's fused neighborhood attention (Hassani et al.): FA3/FA4-style kernels that apply the
    # neighborhood mask on every tile of a query block unless the block is fully tile-aligned
    "natten-hopper-fna": Family("natten-hopper-fna", 1.0, True, mask_partial_rows=True, base="fa3"),
    "natten-blackwell-fna": Family("natten-blackwell-fna", 1.0, True, mask_partial_rows=True, base="cudnn",
                                   exp_emulation=True),
    # compiled FlexAttention on a CPU: one thread per "SM", no overlap of matmul and softmax
    "cpu-flex": Family("cpu-flex", 0.0, False, hoists_mask=False, split_kv=False),
}
DEFAULT_FAMILY = {"hopper": "fa3", "blackwell": "fa4", "ampere": "fa2", "cdna3": "fa2", "cpu": "cpu-flex"}


def default_family(hw: Hardware) -> str:
    """The best published kernel family on ``hw``'s generation (the one simulations assume
    unless told otherwise); a generation without one must name its family.

    >>> from attncomp.simulator import gpu
    >>> default_family(gpu("b200"))
    'fa4'
    """
    if hw.generation not in DEFAULT_FAMILY:
        raise AttncompError(f"{hw.name}: no default kernel family for generation {hw.generation!r}; known "
                            f"generations: {', '.join(DEFAULT_FAMILY)}; pass family= (one of {', '.join(FAMILIES)})")
    return DEFAULT_FAMILY[hw.generation]

EFFICIENCY_FILE = os.path.join(os.path.dirname(__file__), "data", "efficiency.json")


def head_dim_class(head_dim: int) -> str:
    return "d64" if head_dim <= 64 else "d128" if head_dim <= 128 else "d256"


def dtype_class(dtype: str) -> str:
    return {"fp16": "16", "bf16": "16", "float16": "16", "bfloat16": "16", "fp8": "8", "float32": "32",
            "fp32": "32"}.get(dtype, dtype)


POWER_WINDOW = "power_window_s"  # the table's one global entry, beside the per-group factors


@functools.lru_cache(maxsize=1)
def _efficiency_file() -> dict:
    if not os.path.exists(EFFICIENCY_FILE):
        return {}
    with open(EFFICIENCY_FILE) as fh:
        data = json.load(fh)
    return {**data["factors"], **({POWER_WINDOW: data[POWER_WINDOW]} if POWER_WINDOW in data else {})}


def load_efficiencies() -> dict:
    """The fitted table: one factor per ``hardware|family|dtype|head-dim`` group, and the
    boost window ``power_window_s`` shared by every GPU."""
    return dict(_efficiency_file())


def power_window(table: dict | None = None) -> float:
    """The fitted boost window (seconds) of :meth:`Hardware.run_seconds`."""
    table = _efficiency_file() if table is None else table
    return table.get(POWER_WINDOW, POWER_WINDOW_S)


def efficiency(hw: Hardware, family: Family, dtype: str, head_dim: int, table: dict | None = None) -> tuple[float, str]:
    """The fitted efficiency for this (hardware, family, dtype, head dim) and where it came from:
    the exact group, the family's base family, or the mean of the hardware's 16-bit groups."""
    if hw.generation == "cpu":
        return 1.0, "measured rates of this CPU"
    table = _efficiency_file() if table is None else table
    dc, hc = dtype_class(dtype), head_dim_class(head_dim)
    for fam in (family.name, family.base):
        for key in (f"{hw.name}|{fam}|{dc}|{hc}", f"{hw.name}|{fam}|{dc}|d128"):
            if fam and key in table:
                return table[key], key
    same_hw = [v for k, v in table.items() if k.startswith(hw.name + "|")]
    if same_hw:
        return float(np.mean(same_hw)), f"{hw.name}|mean of {len(same_hw)} groups"
    return 0.6, "default 0.6 (no measurement for this hardware)"


@dataclass
class TileTimes:
    """Cycle costs on one SM, split by what limits them."""

    full: float
    partial: float
    parts_full: dict
    parts_partial: dict


def tile_times(work: TileWork, hw: Hardware, family: Family, eff: float, reuse: float, fp8: bool = False) -> TileTimes:
    tensor_rate = hw.tensor_flops_per_clk * eff * (hw.fp8_factor if fp8 else 1.0)
    t_tensor = work.tensor_flops / tensor_rate
    exp_rate = hw.exp_per_clk + (hw.alu_per_clk / EXP_POLY_OPS if family.exp_emulation else 0.0)
    t_other = work.sfu / exp_rate + work.alu / hw.alu_per_clk
    t_mask = work.mask_sfu / exp_rate + work.mask_alu / hw.alu_per_clk
    # operands stream from DRAM (shared by concurrent CTAs of a head through L2) into shared
    # memory, and from there into the tensor cores: Q once per tile (QK^T), K and V once
    t_mem = max(work.kv_bytes / (hw.hbm_bytes_per_clk_per_sm * max(reuse, 1.0)),
                (work.kv_bytes + work.q_bytes) / SMEM_BYTES_PER_CLK)

    def one(other: float, hidden: float) -> tuple[float, dict]:
        if t_tensor >= other:
            compute, parts = t_tensor + (1 - hidden) * other, {"matmul": t_tensor, "exp": (1 - hidden) * other}
        else:
            compute, parts = other + (1 - hidden) * t_tensor, {"matmul": (1 - hidden) * t_tensor, "exp": other}
        parts["memory"] = max(0.0, t_mem - compute)
        parts["overhead"] = TILE_OVERHEAD_CLK
        return max(compute, t_mem) + TILE_OVERHEAD_CLK, parts

    full, pf = one(t_other, family.overlap)
    partial, pp = one(t_other + t_mask, min(family.overlap, family.masked_overlap))
    extra = partial - full
    pp = dict(pf, mask=extra)
    return TileTimes(full, partial, pf, pp)


def cta_fixed(work: TileWork, hw: Hardware, family: Family, eff: float) -> float:
    """Cycles a CTA spends outside its tile loop: DRAM latency and the first loads
    (prologue), storing the output and any epilogue matmul; persistent kernels overlap
    half of it with the neighbouring CTA."""
    per_sm = hw.hbm_bytes_per_clk_per_sm
    latency = DRAM_LATENCY_US * 1e3 * hw.clock_ghz
    prologue = latency + (work.q_bytes + work.kv_bytes) / per_sm
    epilogue = work.out_bytes / per_sm + work.epilogue_flops / (hw.tensor_flops_per_clk * eff)
    return (prologue + epilogue) * (0.5 if family.persistent else 1.0)


def chunk_cycles(work: TileWork, hw: Hardware, eff: float) -> tuple[float, float]:
    """Per query block of a chunked linear kernel: cycles of ``phi(Q)`` and of ``phi(Q) S``
    (the row's product with its carried state), and cycles per run of full tiles (two
    prefix states loaded)."""
    c = work.chunked
    sfu, alu = c.row_ops
    return (c.row_flops / (hw.tensor_flops_per_clk * eff) + sfu / hw.exp_per_clk + alu / hw.alu_per_clk,
            c.run_bytes / hw.hbm_bytes_per_clk_per_sm)


def chunk_prepass_seconds(work: TileWork, key_blocks: int, hw: Hardware, eff: float) -> float:
    """The first pass of a chunked linear kernel over ``key_blocks`` (batch x KV heads x key
    blocks): each block's feature map ``phi(K)`` and state ``phi(K)^T V``, then the prefix sum
    over blocks -- bound by compute or by HBM, whichever is slower, plus its launch."""
    c = work.chunked
    sfu, alu = c.key_block_ops
    per_clk = hw.sms * hw.clock_ghz * 1e9
    compute = key_blocks * (c.key_block_flops / (hw.peak_tflops * 1e12 * eff) + sfu / (hw.exp_per_clk * per_clk)
                            + alu / (hw.alu_per_clk * per_clk))
    return max(compute, key_blocks * c.key_block_bytes / (hw.hbm_gbps * 1e9)) + hw.launch_us * 1e-6


def passes_time(passes, hw: Hardware, eff: float) -> tuple[float, dict]:
    """Time of whole-tensor passes (one kernel each): tensor FLOPs, ALU ops or bytes, whichever
    is slowest, and a launch; split by what limited each."""
    parts = {"matmul": 0.0, "exp": 0.0, "memory": 0.0, "mask": 0.0, "overhead": 0.0}
    for p in passes:
        times = {"matmul": p.flops / (hw.peak_tflops * 1e12 * eff),
                 "exp": p.ops / (hw.alu_per_clk * hw.sms * hw.clock_ghz * 1e9),
                 "memory": p.bytes / (hw.hbm_gbps * 1e9)}
        limit = max(times, key=times.get)
        parts[limit] += times[limit]
        parts["overhead"] += hw.launch_us * 1e-6
    return sum(parts.values()), parts
