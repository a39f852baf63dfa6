"""The skeleton of every generated Triton module: a flash-attention forward kernel and its launch.

codegen.py reads this file as text and fills its holes; attncomp never imports it. A hole is
a comment line ``# <<name>>`` (what follows the marker is a note for readers of this file):
filling replaces the line with generated lines at the marker's indentation, or drops it
where a variant has nothing to put there. A hole that appears more than once (``state``,
``reads``) receives the same lines everywhere, so a signature and its calls agree.

The kernel follows Triton's fused-attention tutorial (``_attn_fwd_inner``, ``offs_m``,
``m_i``, ``l_i``, ``acc``) and FlexAttention's template (``IS_FULL_BLOCKS``): one program
owns a query tile of one (batch, head) and calls the one loop function twice, on its row's
partial key blocks (``IS_FULL=False``: the mask applies) and then on its full ones
(``IS_FULL=True``: no mask). The block lists are the analysis's compressed rows, so empty
blocks are never visited.

Linear terms (``phi(Q) phi(K)^T V``) run chunked, as Lightning Attention-2 does, with the
sequential carry replaced by a prefix sum so that query blocks stay independent: a first
kernel (``attncomp_states``) writes each key block's state ``phi(K_j)^T V_j``, a prefix sum
over blocks follows (float64 where some run starts past block 0, so that its difference
does not cancel; float32 where all start at 0), and a query block adds ``P[b] - P[a]`` for each run
``[a, b)`` of its full key blocks -- two loads per run instead of a visit per tile. Only
partial tiles see the quadratic form; a kernel whose terms are all linear never walks its
full tiles (``VISIT_FULL``).

Holes, module level:
  docstring   the module's docstring: the variant and the Program it implements
  constants   SCALE, the variant's parameters, N_LINEAR (linear terms) and VISIT_FULL (whether
              any term walks the full tiles), as ``tl.constexpr``
  helpers     Python's floor ``//`` and ``%``, where the expressions need them
Holes, loop function (one visit per listed key block):
  state       the values each term carries through the key loop, as parameters and results
  reads       what the loop body reads besides the fixed names: q tiles, K/V pointers and
              strides, runtime tensors, the index names and scales its expressions use
  mask        partial tiles only: ``keep`` narrowed by the mask expression
  scores      the V tile; per term its K tile, score expression, weights and state update
Holes, kernel:
  params      the variant's inputs with their strides, runtime tensors with strides and sizes
  prologue    index names the variant's expressions read (``q_idx``, ``qk_scale``, ...)
  init        the q tiles (after a feature map phi(q)) and each term's initial state
  runs        linear terms: per run of full key blocks, the difference of two prefix states
  epilogue    a sink folded into the row's max and sum, normalization, carried-state readout,
              gates, ``out = <output expression>``, and the logsumexp of a single softmax
Sections (kept only where the variant has linear terms, so other kernels carry no dead code):
  linear      the prefix-state loads of the kernel and the states kernel
  backward    FlashAttention-2's backward kernels and their launch (single-softmax variants)
Holes, states kernel (linear terms):
  state_params    the linear terms' K inputs and V: pointers, strides, state heads per head
  state_heads     each of those pointers offset to its head
  states          the V tile; per linear term phi(K_j) and its stored state
Holes, backward kernels (the dQ pass walks rows, the dK/dV pass columns):
  grad_params     pointers of the captured float tensors' gradients
  bwd_prologue    each key-side input offset to its head
  bwd_q_idx       ``q_idx`` for the tile's rows, where the expressions read it
  bwd_rows        the query tile: q, dO, each row's max and sum (as the forward left them), delta
  bwd_sink        dQ pass, a sink logit's gradient per row (-p_sink * delta), scattered
  bwd_kv          the key block's k and v tiles
  bwd_mask        partial tiles only: ``keep`` narrowed by the mask expression
  bwd_scores      p recomputed as the forward computed it, dS = p (dP - delta), dqk = dS * f'(q.k)
  bwd_captured    per float load of a captured tensor: its gradient, scattered
Holes, launch:
  launch_params   the variant's input and runtime tensor names (and ``selected``, int32 [B, H or
                  H_kv, M, width]: each row's chosen key blocks, -1 padded, for a selection stage)
  launch_inputs   the interpreter's bfloat16 cast, ``q, k, v`` and the runtime tensors as passed
  launch_states   linear terms: the states kernel and the prefix sum (else unused placeholders)
  launch_args     the variant's pointers, strides and sizes, in ``params`` order
  launch_grads    backward: a zero float32 gradient per captured float tensor
  grad_args       backward: those gradients, in ``grad_params`` order
  grad_returns    backward: the return statement
"""

# <<docstring>>
import functools
import math
import os

import torch
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) == exp2(x * LOG2E)
# <<constants>>

# Launch configurations, for triton.autotune on a GPU (the knobs tutorial 06 tunes). The
# block lists were built for one BLOCK_M x BLOCK_N tile, so a launch tunes among the
# configurations of its own tile only; a tile not listed runs with Triton's defaults.
CONFIGS = [
    triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n}, num_warps=warps, num_stages=stages)
    for block_m, block_n in ((64, 64), (128, 64), (128, 128), (64, 32))
    for warps, stages in ((4, 3), (4, 2), (8, 3), (8, 2))
]


# <<helpers>>
@triton.jit
def _attn_fwd_inner(
    # <<state>>
    n_tiles, n_mask,  # tiles visited and mask evaluations, counted when COUNT
    # <<reads>>
    IDX, lo, hi,  # the key blocks IDX[lo:hi] of this row
    b64, offs_n, offs_d, offs_e, kv_len,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, BLOCK_N: tl.constexpr, COUNT: tl.constexpr,
    DOT_PRECISION: tl.constexpr, IS_FULL: tl.constexpr,
):
    for idx in range(lo, hi):
        start_n = tl.load(IDX + idx) * BLOCK_N
        kv_idx = (start_n + offs_n)[None, :]
        n64 = (start_n + offs_n).to(tl.int64)
        col_ok = kv_idx < kv_len
        keep = col_ok  # the pairs that exist: key lanes past kv_len do not
        if not IS_FULL:  # a partial tile: the mask removes some pairs
            # <<mask>> keep = keep & (mask expression)
            if COUNT:
                n_mask += 1
        # <<scores>>
        if COUNT:
            n_tiles += 1
    return (
        # <<state>>
        n_tiles, n_mask,
    )


@triton.jit
def attncomp_fwd(
    Out, Lse, Rows, Stats,  # Lse is written when STORE_LSE, Rows when STORE_ROWS, Stats when COUNT
    stride_Out_b, stride_Out_h, stride_Out_m, stride_Out_e,
    P_OFF, P_IDX, F_OFF, F_IDX,  # per row: the partial and the full key blocks (compressed rows)
    R_OFF, R_START, R_STOP,  # per row: the runs [start, stop) of full key blocks (for linear terms)
    PS, PZ, STATE_GROUP,  # linear terms: prefix states over key blocks; query heads per state head
    q_len, kv_len, H, LAYOUT_B, LAYOUT_H, NUM_Q_BLOCKS, NUM_K_BLOCKS, sm_scale,
    # <<params>>
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, GATE_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_C: tl.constexpr,
    STORE_LSE: tl.constexpr, STORE_ROWS: tl.constexpr, COUNT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    start_m = tl.program_id(0)  # this program's query tile
    off_bh = tl.program_id(1)
    off_b = off_bh // H
    off_h = off_bh % H
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    # element offsets in 64 bits: b * stride_b + m * stride_m passes 2**31 at 1M tokens
    b64, h64, m64 = off_b.to(tl.int64), off_h.to(tl.int64), offs_m.to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < q_len
    # <<prologue>>
    # <<init>>
    n_partial = 0
    n_full = 0
    n_mask = 0
    n_runs = 0
    # this row's key blocks, from the analysis (compressed rows; empty blocks are absent)
    row = ((off_b % LAYOUT_B) * LAYOUT_H + off_h % LAYOUT_H) * NUM_Q_BLOCKS + start_m
    # partial blocks: mask and score mod
    (
        # <<state>>
        n_partial, n_mask,
    ) = _attn_fwd_inner(
        # <<state>>
        n_partial, n_mask,
        # <<reads>>
        P_IDX, tl.load(P_OFF + row), tl.load(P_OFF + row + 1),
        b64, offs_n, offs_d, offs_e, kv_len,
        HEAD_DIM, HEAD_DIM_V, BLOCK_N, COUNT, DOT_PRECISION, IS_FULL=False,
    )
    if VISIT_FULL:  # full blocks: score mod only
        (
            # <<state>>
            n_full, n_mask,
        ) = _attn_fwd_inner(
            # <<state>>
            n_full, n_mask,
            # <<reads>>
            F_IDX, tl.load(F_OFF + row), tl.load(F_OFF + row + 1),
            b64, offs_n, offs_d, offs_e, kv_len,
            HEAD_DIM, HEAD_DIM_V, BLOCK_N, COUNT, DOT_PRECISION, IS_FULL=True,
        )
    # <<if linear>>
    # linear terms: a run [lo, hi) of full key blocks adds P[hi] - P[lo] of the prefix states
    head = (off_b * (H // STATE_GROUP) + off_h // STATE_GROUP).to(tl.int64) * (NUM_K_BLOCKS + 1)
    offs_s = offs_d[:, None] * BLOCK_DV + offs_e[None, :]
    for r in range(tl.load(R_OFF + row), tl.load(R_OFF + row + 1)):
        lo = (head + tl.load(R_START + r)) * N_LINEAR
        hi = (head + tl.load(R_STOP + r)) * N_LINEAR
        # <<runs>> per linear term t: state += P[hi + t] - P[lo + t] (and its sum of phi(k))
        if COUNT:
            n_runs += 1
    # <<end linear>>
    # <<epilogue>> ends with out = the output tile
    tl.store(Out + b64 * stride_Out_b + h64 * stride_Out_h + m64[:, None] * stride_Out_m + offs_e[None, :] * stride_Out_e,
             out.to(Out.dtype.element_ty), mask=row_ok[:, None] & (offs_e[None, :] < HEAD_DIM_V))
    if COUNT:  # tiles touched and mask evaluations, per program
        pid = off_bh * NUM_Q_BLOCKS + start_m
        tl.store(Stats + pid * 4 + 0, n_partial)
        tl.store(Stats + pid * 4 + 1, n_full)
        tl.store(Stats + pid * 4 + 2, n_mask)
        tl.store(Stats + pid * 4 + 3, n_runs)
# <<if linear>>


@triton.jit
def attncomp_states(
    PS, PZ, kv_len, NUM_K_BLOCKS, STATE_H, sm_scale,
    # <<state_params>>
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One key block of one (batch, state head): each linear term's phi(K_j)^T V_j (and the
    sum of phi(K_j)), stored at block j + 1 of the prefix (block 0 stays zero)."""
    start_j = tl.program_id(0)
    off_bs = tl.program_id(1)
    off_s = off_bs % STATE_H
    b64 = (off_bs // STATE_H).to(tl.int64)
    start_n = start_j * BLOCK_N
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    n64 = (start_n + offs_n).to(tl.int64)
    col_ok = (start_n + offs_n)[None, :] < kv_len  # key lanes past kv_len add nothing
    offs_s = offs_d[:, None] * BLOCK_DV + offs_e[None, :]
    blk = (off_bs.to(tl.int64) * (NUM_K_BLOCKS + 1) + start_j + 1) * N_LINEAR
    # <<state_heads>>
    # <<states>>
# <<end linear>>
# <<if backward>>


@triton.jit
def attncomp_bwd_dq(
    DQ, Rows, Delta, DO, Stats,  # DQ [B, H, M, BLOCK_D] float32; DO float32 [B, H, M, HEAD_DIM_V]
    P_OFF, P_IDX, F_OFF, F_IDX,  # per row (query block): the partial and the full key blocks
    q_len, kv_len, H, LAYOUT_B, LAYOUT_H, NUM_Q_BLOCKS, sm_scale,
    # <<params>>
    # <<grad_params>>
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, COUNT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dQ of one query tile (FlashAttention-2's dQ pass): the row's partial key blocks with
    the mask applied, then its full ones without it; empty blocks are never visited."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b = off_bh // H
    off_h = off_bh % H
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    b64, h64, m64 = off_b.to(tl.int64), off_h.to(tl.int64), offs_m.to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < q_len
    # <<bwd_prologue>> each key-side input offset to its head
    # <<bwd_q_idx>>
    # <<bwd_rows>> the query tile's q, dO, row max and sum, and delta
    # <<bwd_sink>> a sink logit's gradient, -p_sink * delta per row, scattered into its tensor
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    n_tiles = 0
    n_mask = 0
    row = ((off_b % LAYOUT_B) * LAYOUT_H + off_h % LAYOUT_H) * NUM_Q_BLOCKS + start_m
    for phase in tl.static_range(2):  # 0: partial key blocks (the mask applies), 1: full ones
        if phase == 0:
            IDX, lo, hi = P_IDX, tl.load(P_OFF + row), tl.load(P_OFF + row + 1)
        else:
            IDX, lo, hi = F_IDX, tl.load(F_OFF + row), tl.load(F_OFF + row + 1)
        for idx in range(lo, hi):
            start_n = tl.load(IDX + idx) * BLOCK_N
            kv_idx = (start_n + offs_n)[None, :]
            n64 = (start_n + offs_n).to(tl.int64)
            col_ok = kv_idx < kv_len
            keep = row_ok[:, None] & col_ok
            if phase == 0:
                # <<bwd_mask>> keep = keep & (mask expression)
                if COUNT:
                    n_mask += 1
            # <<bwd_kv>> the key block's k (as [BLOCK_D, BLOCK_N]) and v tiles
            # <<bwd_scores>> p, dS and dS * d(score mod)/d(q.k) of the tile
            dq += tl.dot(dqk, tl.trans(k).to(tl.float32), input_precision=DOT_PRECISION)
            if COUNT:
                n_tiles += 1
    tl.store(DQ + (off_bh.to(tl.int64) * q_len + m64[:, None]) * BLOCK_D + offs_d[None, :], dq, mask=row_ok[:, None])
    if COUNT:
        pid = off_bh * NUM_Q_BLOCKS + start_m
        tl.store(Stats + pid * 2 + 0, n_tiles)
        tl.store(Stats + pid * 2 + 1, n_mask)


@triton.jit
def attncomp_bwd_dkdv(
    DK, DV, Rows, Delta, DO, Stats,  # DK, DV [B, H, N, BLOCK_D | BLOCK_DV] float32, per query head
    CP_OFF, CP_IDX, CF_OFF, CF_IDX,  # per column (key block): the partial and the full query blocks
    q_len, kv_len, H, LAYOUT_B, LAYOUT_H, NUM_K_BLOCKS, sm_scale,
    # <<params>>
    # <<grad_params>>
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, COUNT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dK and dV of one key block (FlashAttention-2's dK/dV pass), walking the column's
    partial query blocks with the mask applied, then its full ones; the captured tensors'
    gradients are scattered here (atomics: a load's adjoint is a scatter-add)."""
    start_j = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b = off_bh // H
    off_h = off_bh % H
    start_n = start_j * BLOCK_N
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    b64, h64 = off_b.to(tl.int64), off_h.to(tl.int64)
    kv_idx = (start_n + offs_n)[None, :]
    n64 = (start_n + offs_n).to(tl.int64)
    col_ok = kv_idx < kv_len
    # <<bwd_prologue>>
    # <<bwd_kv>>
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    n_tiles = 0
    n_mask = 0
    col = ((off_b % LAYOUT_B) * LAYOUT_H + off_h % LAYOUT_H) * NUM_K_BLOCKS + start_j
    for phase in tl.static_range(2):  # 0: partial query blocks (the mask applies), 1: full ones
        if phase == 0:
            IDX, lo, hi = CP_IDX, tl.load(CP_OFF + col), tl.load(CP_OFF + col + 1)
        else:
            IDX, lo, hi = CF_IDX, tl.load(CF_OFF + col), tl.load(CF_OFF + col + 1)
        for idx in range(lo, hi):
            offs_m = tl.load(IDX + idx) * BLOCK_M + tl.arange(0, BLOCK_M)
            m64 = offs_m.to(tl.int64)
            row_ok = offs_m < q_len
            # <<bwd_q_idx>>
            # <<bwd_rows>>
            keep = row_ok[:, None] & col_ok
            if phase == 0:
                # <<bwd_mask>>
                if COUNT:
                    n_mask += 1
            # <<bwd_scores>>
            # <<bwd_captured>> the captured float tensors' gradients, scattered with atomics
            dv += tl.dot(tl.trans(p), do, input_precision=DOT_PRECISION)
            dk += tl.dot(tl.trans(dqk), q.to(tl.float32), input_precision=DOT_PRECISION)
            if COUNT:
                n_tiles += 1
    rows = off_bh.to(tl.int64) * kv_len + n64[:, None]
    key_ok = ((start_n + offs_n) < kv_len)[:, None]
    tl.store(DK + rows * BLOCK_D + offs_d[None, :], dk, mask=key_ok)
    tl.store(DV + rows * BLOCK_DV + offs_e[None, :], dv, mask=key_ok)
    if COUNT:
        pid = off_bh * NUM_K_BLOCKS + start_j
        tl.store(Stats + pid * 2 + 0, n_tiles)
        tl.store(Stats + pid * 2 + 1, n_mask)
# <<end backward>>


@functools.lru_cache
def tuned(block_m, block_n, tune):
    """attncomp_fwd for one tile, autotuned over that tile's CONFIGS when ``tune`` (on a GPU;
    the interpreter has no timer to tune with and takes the first)."""
    configs = [c for c in CONFIGS if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) == (block_m, block_n)]
    configs = configs or [triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n})]
    return triton.autotune(configs if tune else configs[:1], key=["q_len", "kv_len", "HEAD_DIM", "HEAD_DIM_V"])(attncomp_fwd)


def attention(
    # <<launch_params>>
    blocks, layout_shape=(1, 1), block_m=64, block_n=64, store_lse=False, count=False, wide_prefix=True, rows=None,
):
    """Launch the kernel. `blocks` = (partial offsets, partial indices, full offsets, full indices,
    run offsets, run starts, run stops): the analysis's compressed rows and its runs of full
    blocks as int32 tensors on the inputs' device, for groups of shape `layout_shape` (batch,
    heads; 1 where the mask does not depend on it) and the tile (block_m, block_n) they were
    built for. Returns (out, lse, stats); stats holds per program (partial tiles visited, full
    tiles visited, mask evaluations, runs of full tiles read as prefix states). Linear terms
    keep their prefix states in float64 when `wide_prefix` (some run starts past block 0),
    else in float32. `rows` (float32 [B, H, M, 2]), where given, receives each row's max of
    the base-2 logits and its sum of exponentials (single-softmax kernels): the backward
    recomputes p from them exactly as the forward did.
    """
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's interpreter, as for CPU tensors
    # <<launch_inputs>> defines out_dtype, q, k, v and gate_dim
    B, H, M, D = q.shape
    N, DV = k.shape[2], v.shape[3]
    out = torch.empty((B, H, M, DV), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, M), dtype=torch.float32, device=q.device) if store_lse else out
    grid = (triton.cdiv(M, block_m), B * H)
    stats = torch.zeros(grid[0] * grid[1] * 4, dtype=torch.int32, device=q.device) if count else out
    pow2 = lambda x: max(16, triton.next_power_of_2(x))
    scale = SCALE if SCALE is not None else 1.0 / math.sqrt(D)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    num_k_blocks = triton.cdiv(N, block_n)
    # <<launch_states>> defines prefix, prefix_z and state_group
    tuned(block_m, block_n, not interpreted)[grid](
        out, lse, out if rows is None else rows, stats, *out.stride(), *blocks, prefix, prefix_z, state_group,
        M, N, H, layout_shape[0], layout_shape[1], grid[0], num_k_blocks, scale,
        # <<launch_args>>
        HEAD_DIM=D, HEAD_DIM_V=DV, GATE_DIM=gate_dim, BLOCK_D=pow2(D), BLOCK_DV=pow2(DV), BLOCK_C=pow2(gate_dim),
        STORE_LSE=store_lse, STORE_ROWS=rows is not None, COUNT=count, DOT_PRECISION=precision,
    )
    out = out.to(out_dtype)
    return out, (lse if store_lse else None), (stats.view(grid[1], grid[0], 4) if count else None)
# <<if backward>>


def backward(
    # <<launch_params>>
    out, rows, grad_out, blocks, columns, layout_shape=(1, 1), block_m=64, block_n=64, count=False,
):
    """Gradients for `grad_out` (dOut) of a call of `attention` that returned `out` and
    filled `rows` (each row's max and sum). `blocks` are the forward's lists (the dQ pass walks rows), `columns`
    = (partial offsets, partial indices, full offsets, full indices) per key block (the dK/dV
    pass walks columns). Returns (dQ, dK, dV, {captured tensor: gradient}, stats), stats per
    program of each pass (tiles visited, mask evaluations) when `count`. Grouped K/V heads
    get the sum over their group; the captured tensors' gradients accumulate in float64
    (atomics, in any order: an entry of a table may be read by every pair).
    """
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    # <<launch_inputs>>
    B, H, M, D = q.shape
    N, DV = k.shape[2], v.shape[3]
    pow2 = lambda x: max(16, triton.next_power_of_2(x))
    scale = SCALE if SCALE is not None else 1.0 / math.sqrt(D)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    grad_out = grad_out.float().contiguous()
    delta = (grad_out * out.float()).sum(-1).contiguous()  # D_i = rowsum(dO * O), FlashAttention-2
    f32 = dict(dtype=torch.float32, device=q.device)
    dq = torch.zeros((B, H, M, pow2(D)), **f32)
    dk, dv = torch.zeros((B, H, N, pow2(D)), **f32), torch.zeros((B, H, N, pow2(DV)), **f32)
    # <<launch_grads>> a float32 gradient per captured float tensor the score reads
    grid_q, grid_k = (triton.cdiv(M, block_m), B * H), (triton.cdiv(N, block_n), B * H)
    stats_q = torch.zeros(grid_q[0] * grid_q[1] * 2, dtype=torch.int32, device=q.device) if count else dq
    stats_k = torch.zeros(grid_k[0] * grid_k[1] * 2, dtype=torch.int32, device=q.device) if count else dq
    sizes = dict(HEAD_DIM=D, HEAD_DIM_V=DV, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=pow2(D), BLOCK_DV=pow2(DV),
                 COUNT=count, DOT_PRECISION=precision)
    attncomp_bwd_dq[grid_q](
        dq, rows, delta, grad_out, stats_q, *blocks[:4], M, N, H, layout_shape[0], layout_shape[1], grid_q[0], scale,
        # <<launch_args>>
        # <<grad_args>>
        **sizes,
    )
    attncomp_bwd_dkdv[grid_k](
        dk, dv, rows, delta, grad_out, stats_k, *columns, M, N, H, layout_shape[0], layout_shape[1], grid_k[0], scale,
        # <<launch_args>>
        # <<grad_args>>
        **sizes,
    )
    grouped = lambda x, n, d: x[..., :d].view(B, n, H // n, N, d).sum(2)  # a K/V head: the sum over its group
    grads = (dq[..., :D].to(out_dtype), grouped(dk, k.shape[1], D).to(out_dtype),
             grouped(dv, v.shape[1], DV).to(out_dtype))
    stats = (stats_q.view(grid_q[1], grid_q[0], 2), stats_k.view(grid_k[1], grid_k[0], 2)) if count else None
    # <<grad_returns>> return the gradients, the captured tensors' by name, and stats
# <<end backward>>
