"""``simulate``: predicted time, throughput and speedup of a spec on a GPU model."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import AttncompError, api_boundary
from ..ir import expr as E
from ..ir.analysis import BlockLayout, analyze, group_shape
from ..ir.arguments import block_shape, positive_int
from ..ir.plan import Plan, plan_of
from ..ir.program import Program
from .costs import einsum_passes, elements, key_loop, tile_work
from .hardware import Hardware, gpu
from .model import (DEFAULT_FAMILY, FAMILIES, Family, chunk_cycles, chunk_prepass_seconds, cta_fixed, default_family,
                    efficiency, passes_time, power_window, tile_times)
from .schedule import makespan, num_splits, occupancy, split

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "float16": 2, "bfloat16": 2, "fp8": 1, "fp32": 4, "float32": 4}


@dataclass
class Estimate:
    """A prediction. ``tflops`` counts useful FLOPs (pairs the mask keeps), ``executed_tflops``
    all FLOPs of visited tiles; ``speedup`` is over the dense kernel of the same shape under
    the same model; ``breakdown`` splits ``time_s`` by what limited it.

    Two bounds on ``speedup``, true under the model (``speedup <= bound <= flop_bound``):
    ``bound`` is the speedup of an ideal kernel of the family that visits the same tiles,
    perfectly balanced over the SMs and with no mask cost; ``flop_bound`` that of one doing
    only the kept pairs' work. Both divide the dense kernel's predicted time, wave tail
    included, which is why they can exceed the plain ratios: ``tile_ratio`` = total tiles /
    visited tiles and ``flop_ratio`` = 1 / mask density (inf when nothing is kept).

    ``io_floor_s`` is the physical limit: the time to read every query row, every key and
    value block a visited tile needs (once per KV head) and write the output at full HBM
    bandwidth; ``time_s >= io_floor_s``. Decode shapes approach it: the queries of a GQA group
    share a CTA (``shape["packed_gqa"]``) and the key range is split over the SMs
    (``shape["splits"]``, FlashDecoding).

    Time follows the exact tile classes. Where the layout's mask density is a sampled
    estimate (``mask_density_exact`` False), what depends on it — ``tflops``,
    ``flop_bound``, ``flop_ratio`` — carries its 95% interval: ``mask_density_ci``,
    ``tflops_range`` and ``flop_bound_range``."""

    name: str
    hardware: str
    family: str
    time_s: float
    tflops: float
    executed_tflops: float
    speedup: float
    bound: float
    flop_bound: float
    tile_ratio: float
    flop_ratio: float
    breakdown: dict
    dense_time_s: float
    efficiency: float
    efficiency_source: str
    block: tuple[int, int]
    io_floor_s: float = 0.0
    baseline: str = ""
    baseline_time_s: float = 0.0
    speedup_vs_baseline: float = 1.0
    shape: dict = field(default_factory=dict)
    mask_density: float = 1.0
    mask_density_ci: tuple[float, float] = (1.0, 1.0)
    mask_density_exact: bool = True
    tflops_range: tuple[float, float] = (0.0, 0.0)
    flop_bound_range: tuple[float, float] = (0.0, 0.0)

    def summary(self) -> dict:
        out = {k: getattr(self, k) for k in ("name", "hardware", "family", "time_s", "tflops", "executed_tflops",
                                              "speedup", "bound", "flop_bound", "tile_ratio", "flop_ratio",
                                              "dense_time_s", "baseline", "baseline_time_s",
                                              "speedup_vs_baseline", "io_floor_s", "efficiency",
                                              "efficiency_source", "mask_density", "mask_density_exact")}
        ranges = {k: list(getattr(self, k)) for k in ("mask_density_ci", "tflops_range", "flop_bound_range")}
        return out | ranges | {"block": list(self.block), "breakdown": self.breakdown, "shape": self.shape}


def _io_floor(layout: BlockLayout, batch: int, heads: int, kv_heads: int, key_row_bytes: float,
              query_row_bytes: float) -> float:
    """Bytes any kernel must move: every query row read and output row written once
    (``query_row_bytes`` per token, all heads), and every key row that a visited tile reads
    loaded once (``key_row_bytes`` per token over all K/V heads of all key-side inputs). Where
    the mask differs per head, each KV head is credited with the most any of its query heads
    reads, a lower bound on what the group reads."""
    sb, sh = layout.shape
    touched = layout.kv_blocks_touched().reshape(sb, sh).astype(np.float64)
    if sh > 1:
        touched = touched.reshape(sb, kv_heads, sh // kv_heads).max(axis=2)
    rows = np.minimum(touched * layout.block[1], layout.kv_len).mean()  # per (batch, KV head)
    return float(batch * (rows * key_row_bytes + layout.q_len * query_row_bytes))


def _key_heads(program: Program, heads: int, kv_heads: int, given: dict | None, name: str) -> dict[str, int]:
    """Heads of each key-side input: ``given`` where named, else ``kv_heads``."""
    given = dict(given or {})
    if not all(isinstance(k, str) for k in given):
        raise AttncompError("input_heads maps input names to head counts", variant=name)
    key = {d.name for d in program.inputs if "n" in d.letters}
    unknown = set(given) - key
    if unknown:
        raise AttncompError(f"input_heads names {sorted(unknown)}, which are not key-side inputs of {name} "
                            f"(those are {sorted(key)})", variant=name)
    for n, h in given.items():
        positive_int(f"input_heads[{n!r}]", h, name)
        if heads % h:
            raise AttncompError(f"input_heads[{n!r}]={h} must divide heads={heads}", variant=name)
    return {n: given.get(n, kv_heads) for n in key}


def _runs(layout: BlockLayout, batch: int, heads: int, packed: bool, group: int, splits: int,
          full: np.ndarray) -> np.ndarray:
    """Runs of full tiles per CTA, shaped like ``full`` (a split of a row with full tiles has
    at least one)."""
    runs = np.broadcast_to(layout.full_runs(), (batch, heads, layout.num_q_blocks)).astype(np.float64)
    if packed:
        runs = runs[:, ::group]
    if splits > 1:
        runs = split(runs, splits)
    return np.where(full > 0, np.clip(runs, 1, None), 0.0)


def _tile_counts(layout: BlockLayout, batch: int, heads: int, family: Family) -> tuple[np.ndarray, np.ndarray]:
    partial, full = layout.row_blocks()
    shape = (batch, heads, layout.num_q_blocks)
    partial, full = np.broadcast_to(partial, shape), np.broadcast_to(full, shape)
    if family.mask_partial_rows:
        rows = partial > 0
        partial, full = np.where(rows, partial + full, partial), np.where(rows, 0, full)
    return partial.astype(np.float64), full.astype(np.float64)


@functools.lru_cache(maxsize=256)
def _works(planned: Plan, bm: int, bn: int, head_dim: int, value_dim: int, nbytes: int, hoisted: bool):
    """Tile work of the optimized spec and of its dense version (cached: sweeps reuse it)."""
    program = planned.program
    return (tile_work(program, bm, bn, head_dim, value_dim, dtype_bytes=nbytes, hoisted=hoisted),
            tile_work(replace(program, mask=None), bm, bn, head_dim, value_dim, dtype_bytes=nbytes, hoisted=hoisted))


MMA_M = 64  # rows of the smallest tensor-core tile a GPU kernel issues (Hopper wgmma, Blackwell tcgen05)
MAX_HEAD_DIM = 1024  # beyond any kernel family's head dim; larger values are typos, not designs


def _check_layout(planned: Plan, layout, q_len: int, kv_len: int, block: tuple[int, int], batch: int,
                  heads: int) -> None:
    """A ``layout=`` given to reuse must be this problem's: same spec, sizes, block, and a
    layout per batch element / head where the mask reads ``b`` / ``h``."""
    name = planned.name
    if not isinstance(layout, BlockLayout):
        raise AttncompError(f"layout must be a BlockLayout from ac.analyze, got {type(layout).__name__}", variant=name)
    if layout.block != block or (layout.q_len, layout.kv_len) != (q_len, kv_len):
        raise AttncompError(f"the layout is for {layout.q_len}x{layout.kv_len} with blocks {layout.block}, "
                            f"not {q_len}x{kv_len} with {block}", variant=name)
    mask = planned.program.mask
    shape = group_shape(E.letters_of(mask) if mask is not None else set(), batch, heads)
    if layout.name != name or tuple(layout.shape) != shape:
        raise AttncompError(f"the layout is of {layout.name} with (batch, heads) groups {tuple(layout.shape)}, "
                            f"not of {name} at batch={batch}, heads={heads} (groups {shape})", variant=name,
                            hint="Analyze with the same batch and heads, or leave layout= out")


@api_boundary
def simulate(spec: Program | Plan, hardware: str | Hardware = "h100", batch: int = 1, heads: int = 1, kv_heads: int | None = None,
             q_len: int = 4096, kv_len: int | None = None, head_dim: int = 128, value_dim: int | None = None,
             dtype: str = "bf16", block: tuple[int, int] | None = None, tensors: dict | None = None,
             family: str | None = None, order: str | None = None, layout: BlockLayout | None = None,
             efficiency_table: dict | None = None, baseline: str | None = None,
             input_heads: dict | None = None) -> Estimate:
    """Predict the time of ``spec`` on ``hardware`` before any kernel exists.

    >>> import attncomp as ac
    >>> est = ac.simulate(ac.variants.causal(), hardware="h100", heads=16, q_len=16384, head_dim=128)
    >>> round(est.tile_ratio, 2), round(est.flop_ratio, 2), est.speedup > 1.8
    (1.98, 2.0, True)
    >>> est.speedup <= est.bound <= est.flop_bound
    True

    ``input_heads`` gives key-side inputs of a cascade their own head counts (each dividing
    ``heads``; default ``kv_heads``): Grouped Differential Attention shares its second K
    across more query heads than its first, and loads it less.

    ``speedup`` is over the spec's own dense form; ``speedup_vs_baseline`` over plain dense
    softmax attention of the same shape run by ``baseline`` (a kernel family; default the
    GPU's best, FA3 on H100), the kernel users compare with: a score mod's cost shows there.

    >>> bias = ac.attention(score=lambda s, b, h, q, k: s - 0.01 * (q - k) ** 2, name="gaussian_bias")
    >>> est = ac.simulate(bias, "b200", heads=16, q_len=8192)
    >>> round(est.speedup, 2), est.baseline, est.speedup_vs_baseline < 0.9
    (1.0, 'fa4', True)
    """
    if not isinstance(spec, (Program, Plan)):
        raise AttncompError(f"ac.simulate expects a Program, got {type(spec).__name__}",
                            hint="Wrap a mask function as ac.attention(mask=fn)" if callable(spec) else None)
    planned = plan_of(spec)
    name = planned.name
    for arg, value in (("hardware", hardware), ("dtype", dtype), ("family", family), ("order", order)):
        if not isinstance(value, str) and (value is not None or arg == "hardware") and not isinstance(value, Hardware):
            raise AttncompError(f"{arg} must be a name (a string), got {value!r}", variant=name)
    if efficiency_table is not None and not isinstance(efficiency_table, dict):
        raise AttncompError(f"efficiency_table must be a dict like simulator/data/efficiency.json, got "
                            f"{type(efficiency_table).__name__}", variant=name)
    hw = hardware if isinstance(hardware, Hardware) else gpu(hardware)
    fam_name = family or default_family(hw)
    if fam_name not in FAMILIES:
        raise AttncompError(f"unknown kernel family {fam_name!r}; known: {', '.join(FAMILIES)}", variant=name)
    fam = FAMILIES[fam_name]
    base_name = baseline or DEFAULT_FAMILY.get(hw.generation, fam_name)
    if not isinstance(base_name, str) or base_name not in FAMILIES:
        raise AttncompError(f"unknown baseline kernel family {base_name!r}; known: {', '.join(FAMILIES)}",
                            variant=name)
    if dtype not in DTYPE_BYTES:
        raise AttncompError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPE_BYTES)}", variant=name)
    if dtype == "fp8" and hw.fp8_factor is None:
        raise AttncompError(f"{hw.name} has no fp8 tensor cores; simulate it in bf16 or fp16", variant=name)
    kv_len = q_len if kv_len is None else kv_len
    kv_heads = heads if kv_heads is None else kv_heads
    value_dim = head_dim if value_dim is None else value_dim
    for arg, value in (("batch", batch), ("heads", heads), ("kv_heads", kv_heads), ("q_len", q_len),
                       ("kv_len", kv_len), ("head_dim", head_dim), ("value_dim", value_dim)):
        positive_int(arg, value, name, **({"limit": MAX_HEAD_DIM} if arg in ("head_dim", "value_dim") else {}))
    if heads % kv_heads:
        raise AttncompError(f"kv_heads={kv_heads} must divide heads={heads}", variant=name)
    key_heads = _key_heads(planned.program, heads, kv_heads, input_heads, name)
    bm, bn = block_shape(block, name) if block is not None else fam.block(head_dim)
    if layout is None:
        layout = analyze(planned, q_len, kv_len, (bm, bn), tensors=tensors, batch=batch, heads=heads)
    else:
        _check_layout(planned, layout, q_len, kv_len, (bm, bn), batch, heads)
    nbytes = DTYPE_BYTES[dtype]
    eff, source = efficiency(hw, fam, dtype, head_dim, efficiency_table)
    window = power_window(efficiency_table)
    shape = {"batch": batch, "heads": heads, "kv_heads": kv_heads, "q_len": q_len, "kv_len": kv_len,
             "head_dim": head_dim, "value_dim": value_dim, "dtype": dtype}
    base_s = (_baseline_seconds(hw, base_name, tuple(shape.items()), efficiency_table)
              if planned.program != _dense().program or base_name != fam.name or block is not None else None)
    if not key_loop(planned.program):
        # no (query x key) tiles: every equation is one pass, linear in the length
        sizes = {"b": batch, "h": heads, "m": q_len, "n": kv_len, "d": head_dim, "e": value_dim, "c": head_dim}
        passes = einsum_passes(planned.program, sizes, nbytes)
        time_s, breakdown = passes_time(passes, hw, eff)
        breakdown["imbalance"] = 0.0
        io = (sum(elements(d.letters, sizes | {"h": key_heads.get(d.name, heads)}) for d in planned.program.inputs)
              + batch * heads * q_len * value_dim) * nbytes
        ops = sum(p.flops for p in passes)
        return Estimate(
            name=spec.name, hardware=hw.name, family=fam.name, time_s=time_s, tflops=ops / time_s / 1e12,
            executed_tflops=ops / time_s / 1e12, speedup=1.0, bound=1.0, flop_bound=1.0, tile_ratio=1.0,
            flop_ratio=1.0, breakdown=breakdown, dense_time_s=time_s, efficiency=eff, efficiency_source=source,
            block=(bm, bn), io_floor_s=io / (hw.hbm_gbps * 1e9), baseline=base_name, baseline_time_s=base_s,
            speedup_vs_baseline=base_s / time_s, shape=shape | {"splits": 1, "packed_gqa": False, "passes": True})
    fp8 = dtype == "fp8"
    group = heads // kv_heads
    mask = planned.program.mask
    partial, full = _tile_counts(layout, batch, heads, fam)
    # decode: the query rows of a GQA group share one CTA, so each K/V tile is loaded once per
    # KV head (FlashDecoding; FlashAttention-3's PackGQA) -- unless the mask differs per head
    packed = (fam.split_kv and group > 1 and q_len * group <= bm
              and (mask is None or "h" not in E.letters_of(mask)))
    if packed:
        partial, full = partial[:, ::group], full[:, ::group]
    rows = min(bm, q_len * (group if packed else 1))
    # a CTA with fewer query rows than its block (decode) still pays whole MMA row groups
    mma_rows = min(bm, -(-rows // MMA_M) * MMA_M) if fam.split_kv else bm
    work, dense_work = _works(planned, mma_rows, bn, head_dim, value_dim, nbytes, fam.hoists_mask)
    if work.chunked is not None:  # the prefix states' width, as the Triton launch chooses it
        work = replace(work, chunked=work.chunked.narrow(bool(np.any(layout.full.start > 0))))
        dense_work = replace(dense_work, chunked=dense_work.chunked.narrow(False))  # one run from block 0
    dense_full = np.full(partial.shape, float(layout.num_kv_blocks))
    # too few CTAs to fill the GPU (decode, small batches): each key range is split and the
    # partial results combined by a second kernel
    splits = num_splits(partial.size, layout.num_kv_blocks, hw.sms) if fam.split_kv else 1
    if splits > 1:
        partial, full, dense_full = split(partial, splits), split(full, splits), split(dense_full, splits)
    ctas = partial.size
    # co-resident CTAs share their SM: at most what shared memory allows, and no more than
    # there are CTAs to go round
    occ = max(1, min(occupancy(hw.smem_kb, bm, bn, head_dim, value_dim, nbytes), -(-ctas // hw.sms)))
    slots = hw.sms * occ
    # concurrent CTAs that read the same K/V tile through L2: a head's query blocks, and the
    # heads of its GQA group unless they are packed into one CTA
    # (an input with fewer heads is shared by more CTAs; one L2 reuse for all inputs, by bytes)
    def reuse_of(input_heads: int) -> float:
        return min(slots, layout.num_q_blocks * ((kv_heads if packed else heads) // input_heads))
    reuse = (work.kv_bytes / sum(b / reuse_of(key_heads[n]) for n, b in work.kv_inputs) if work.kv_inputs
             else reuse_of(kv_heads))
    hbm = hw.hbm_gbps * 1e9
    # combining split results: every split's float32 rows (output and log-sum-exp) written and
    # read back once, then the output written
    combine_s = 0.0 if splits == 1 else (
        (2 * ctas * rows * (value_dim + 1) * 4 + batch * heads * q_len * value_dim * nbytes) / hbm
        + hw.launch_us * 1e-6)

    def chunked_full(w) -> tuple[float, dict, float]:
        """A chunked kernel's full tile (what its other terms still do there, or nothing: it is
        not visited) and its first pass over the key blocks, in seconds."""
        if w.chunked.visits_full:
            fast = tile_times(replace(w, tensor_flops=w.chunked.full_tensor_flops), hw, fam, eff, reuse, fp8)
            cost, parts = fast.full, fast.parts_full
        else:
            cost, parts = 0.0, {}
        return cost, parts, chunk_prepass_seconds(w, batch * kv_heads * layout.num_kv_blocks, hw, eff)

    def seconds(busy_s: float, memory_share: float) -> float:
        """Wall time of ``busy_s`` at the quoted clock: the compute share under the clock the
        GPU runs at (:meth:`Hardware.run_seconds`); time waiting on HBM does not scale with it."""
        return memory_share * busy_s + hw.run_seconds((1 - memory_share) * busy_s, window)

    def ideal(w, partial_tiles, full_tiles):
        """A lower bound on the time of any schedule of these tiles (each at its cheaper,
        full-tile cost; a chunked kernel's full tiles at what its other terms do there) over
        ``ctas`` CTAs: the busy cycles spread evenly over the slots."""
        tt = tile_times(w, hw, fam, eff, reuse, fp8)
        fixed, full_cost, extra_s = cta_fixed(w, hw, fam, eff), min(tt.full, tt.partial), 0.0
        if w.chunked is not None:
            fixed += chunk_cycles(w, hw, eff)[0]
            full_cost, _, extra_s = chunked_full(w)
        busy = fixed * ctas + partial_tiles * min(tt.full, tt.partial) + full_tiles * full_cost
        share = tt.parts_full.get("memory", 0.0) / tt.full
        return (seconds(busy * occ / slots / (hw.clock_ghz * 1e9), share) + hw.launch_us * 1e-6 + combine_s
                + extra_s)

    def run(w, partial, full, runs):
        tt = tile_times(w, hw, fam, eff, reuse, fp8)
        fixed = cta_fixed(w, hw, fam, eff)
        full_cost, full_parts, extra_s = tt.full, tt.parts_full, 0.0
        if w.chunked is not None:  # linear terms: full tiles folded into prefix states
            row, per_run = chunk_cycles(w, hw, eff)
            fixed = fixed + row + runs * per_run
            full_cost, full_parts, extra_s = chunked_full(w)
        fixed = np.broadcast_to(fixed, partial.shape)
        if hw.streaming_factor and hw.cache_kb:
            # a CTA whose K/V sweep outgrows the cache pays the measured streaming cost per tile
            sweep = (partial + full) * w.kv_bytes
            stream = np.where(sweep > hw.cache_kb * 1024, hw.streaming_factor, 1.0)
            partial, full = partial * stream, full * stream
        durations = fixed + partial * tt.partial + full * full_cost
        # a layout shared by every (batch, head) gives every head the same CTAs: schedule one
        # head's list repeated (the same schedule, without sorting all of them)
        copies = durations.shape[0] * durations.shape[1] if layout.groups == 1 else 1
        one = durations[0, 0].reshape(-1) if copies > 1 else durations.reshape(-1)
        span = makespan(one * occ, slots, order or fam.order, copies=copies)
        psum, fsum = float(partial.sum()), float(full.sum())
        parts = {k: psum * tt.parts_partial.get(k, 0) + fsum * full_parts.get(k, 0)
                 for k in ("matmul", "exp", "memory", "mask", "overhead")}
        parts["overhead"] += float(fixed.sum())
        nominal = span / (hw.clock_ghz * 1e9)
        total = seconds(nominal, parts["memory"] / max(sum(parts.values()), 1e-30))
        clock = total / nominal if nominal else 1.0
        # the parts sum to the total busy cycles; spread over the slots they are the makespan
        # less the idle tail, which is the imbalance
        to_s = lambda cycles: cycles * occ / slots / (hw.clock_ghz * 1e9) * clock
        breakdown = {k: to_s(v) for k, v in parts.items()}
        breakdown["imbalance"] = max(0.0, span - float(durations.sum()) * occ / slots) / (hw.clock_ghz * 1e9) * clock
        breakdown["overhead"] += hw.launch_us * 1e-6 + combine_s
        breakdown["memory"] += extra_s
        return total + hw.launch_us * 1e-6 + combine_s + extra_s, breakdown

    runs = _runs(layout, batch, heads, packed, group, splits, full) if work.chunked else 0.0
    time_s, breakdown = run(work, partial, full, runs)
    dense_s, _ = run(dense_work, np.zeros_like(dense_full), dense_full, (dense_full > 0).astype(np.float64))
    total_tiles = float(batch * heads * layout.num_q_blocks * layout.num_kv_blocks)
    visited = float((partial + full).sum()) * (group if packed else 1)
    bound = dense_s / ideal(work, float(partial.sum()), float(full.sum()))
    per_pair = work.tensor_flops / (mma_rows * bn)
    executed = visited * work.tensor_flops
    chunked = None
    if work.chunked is not None:  # the chunked algorithm's FLOPs are the work, not the pairs'
        c, scale = work.chunked, (group if packed else 1)
        executed = chunked = scale * (float(partial.sum()) * work.tensor_flops + float(full.sum()) * c.full_tensor_flops
                                      + ctas * c.row_flops / splits) + batch * kv_heads * layout.num_kv_blocks * c.key_block_flops

    def by_density(d: float) -> tuple[float, float]:
        """(useful FLOPs, flop_bound) at mask density ``d``: kept pairs only, as partial-free
        tiles; a chunked kernel needs no tile for them at all."""
        kept = d * total_tiles / (group if packed else 1)
        flop_bound = dense_s / (ideal(work, 0.0, 0.0) if work.chunked else ideal(work, 0.0, kept))
        return (chunked if chunked is not None else d * batch * heads * q_len * kv_len * per_pair), flop_bound

    density, (low, high) = layout.mask_density, layout.density_ci
    at = {d: by_density(d) for d in {density, low, high}}  # one value when the density is exact
    useful, flop_bound = at[density]
    (useful_low, bound_high), (useful_high, bound_low) = at[low], at[high]
    key_row_bytes = sum(key_heads[n] * b / bn for n, b in work.kv_inputs)
    query_row_bytes = (work.q_bytes / mma_rows + value_dim * nbytes) * heads
    io_floor = _io_floor(layout, batch, heads, kv_heads, key_row_bytes, query_row_bytes) / hbm
    base_s = dense_s if base_s is None else base_s
    return Estimate(
        name=spec.name, hardware=hw.name, family=fam.name, time_s=time_s, tflops=useful / time_s / 1e12,
        executed_tflops=executed / time_s / 1e12, speedup=dense_s / time_s, bound=bound, flop_bound=flop_bound,
        tile_ratio=layout.tile_bound, flop_ratio=(1 / layout.mask_density) if layout.mask_density > 0 else math.inf,
        breakdown=breakdown,
        dense_time_s=dense_s, efficiency=eff, efficiency_source=source, block=(bm, bn), io_floor_s=io_floor,
        baseline=base_name, baseline_time_s=base_s, speedup_vs_baseline=base_s / time_s,
        shape=shape | {"splits": splits, "packed_gqa": packed}, mask_density=density, mask_density_ci=(low, high),
        mask_density_exact=layout.mask_density_exact, tflops_range=(useful_low / time_s / 1e12, useful_high / time_s / 1e12),
        flop_bound_range=(bound_low, bound_high))


@functools.cache
def _dense() -> Plan:
    """Plain softmax attention, no mask, no score mod: what every baseline runs."""
    from ..ir import attention
    return plan_of(attention(name="dense"))


def _baseline_seconds(hw: Hardware, family: str, shape: tuple, table: dict | None) -> float:
    """Predicted time of plain dense attention of this shape with ``family`` on ``hw``
    (cached: a sweep over masks reuses it)."""
    if table is not None:
        return simulate(_dense(), hw, family=family, baseline=family, efficiency_table=table, **dict(shape)).time_s
    return _cached_baseline(hw, family, shape)


@functools.lru_cache(maxsize=256)
def _cached_baseline(hw: Hardware, family: str, shape: tuple) -> float:
    return simulate(_dense(), hw, family=family, baseline=family, **dict(shape)).time_s
