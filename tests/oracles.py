"""Independent plain-torch implementations of every library variant, for the tests.

Nothing here imports attncomp: each variant is rebuilt from its definition in the papers
(and VARIANTS.md) with dense boolean masks, additive biases, or direct formulas, then run
through float64 attention (SDPA where it applies). Grid layouts are constructed by
enumerating tiles, not by the ``//``/``%`` arithmetic the library uses.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F


def sdpa(q, k, v, mask=None, bias=None, scale=None):
    """Float64 attention by SDPA; rows with no allowed key give 0, and zero gradients (such a
    row attends to every key inside SDPA, so nothing is NaN, and is then replaced by 0)."""
    hq, hk = q.shape[1], k.shape[1]
    if hk != hq:
        k, v = k.repeat_interleave(hq // hk, 1), v.repeat_interleave(hq // hk, 1)
    attn = torch.zeros(q.shape[0], q.shape[1], q.shape[2], k.shape[2], dtype=q.dtype)
    if bias is not None:
        attn = attn + bias
    empty = None
    if mask is not None:
        empty = ~mask.any(-1, keepdim=True)
        attn = attn.masked_fill(~(mask | empty), float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn, scale=scale)
    if empty is not None:
        out = torch.where(empty.expand(*out.shape[:-1], 1), torch.zeros_like(out), out)
    return out


def attend_scores(q, k, v, f, mask=None):
    """softmax(f(q k^T / sqrt(d))) v for a score transform f, dense, in float64."""
    s = f(torch.einsum("bhmd,bhnd->bhmn", q, k) / math.sqrt(q.shape[-1]))
    if mask is None:
        return torch.einsum("bhmn,bhne->bhme", torch.softmax(s, -1), v)
    empty = ~mask.any(-1, keepdim=True)  # such rows give 0 (and zero gradients, not NaN)
    p = torch.softmax(s.masked_fill(~(mask | empty), float("-inf")), -1)
    return torch.einsum("bhmn,bhne->bhme", torch.where(empty, 0.0, p), v)


def sink_attention(q, k, v, sinks, mask):
    """gpt-oss's attention with learned sinks, as its reference ``sdpa`` writes it: each query
    head's sink logit is a column appended to the scaled scores, softmaxed with them, then
    dropped (it has no value). A row with no key puts all its weight on the sink: 0 out."""
    hq, hk = q.shape[1], k.shape[1]
    if hk != hq:
        k, v = k.repeat_interleave(hq // hk, 1), v.repeat_interleave(hq // hk, 1)
    s = torch.einsum("bhmd,bhnd->bhmn", q, k) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~mask, float("-inf"))
    column = sinks.to(s.dtype).view(1, -1, 1, 1).expand(*s.shape[:3], 1)
    p = torch.softmax(torch.cat([s, column], -1), -1)[..., :-1]
    return torch.einsum("bhmn,bhne->bhme", p, v)


# --- data-dependent block selection (MoBA, NSA, Quest), from the papers --------------------

def _heads(t, hq):
    return t.repeat_interleave(hq // t.shape[1], 1) if t.shape[1] != hq else t


def _key_blocks(k, block):
    """The keys of each block, [j*block, (j+1)*block) clipped to the length, as a list."""
    return [k[:, :, j * block:(j + 1) * block] for j in range(-(-k.shape[2] // block))]


def pick_blocks(key, k):
    """Per row, ``k`` times the block of the largest key (argmax: ties to the first), skipping
    blocks whose key is -inf; forced blocks carry +inf and so come first. Bool [..., blocks]."""
    key = key.clone()
    chosen = torch.zeros(key.shape, dtype=torch.bool)
    for _ in range(k):
        top = key.argmax(-1, keepdim=True)
        ok = torch.gather(key, -1, top) > float("-inf")
        chosen.scatter_(-1, top, ok | torch.gather(chosen, -1, top))
        key.scatter_(-1, top, float("-inf"))
    return chosen


def block_keys(chosen, block, M, N, causal=True):
    """The pairs a block choice keeps: key n where block n // block was chosen (and, causal,
    n <= m); ``chosen`` [B, H, M, blocks] -> bool [B, H, M, N]."""
    keys = chosen[..., torch.arange(N) // block]
    return keys & (torch.arange(M)[:, None] >= torch.arange(N)[None, :]) if causal else keys


def moba_blocks(q, k, block, top_k):
    """MoBA (Lu et al., 2025): gate_i = q . mean(K_i); future blocks -inf, own block +inf (kept,
    counted in top-k); the top-k blocks."""
    M = q.shape[2]
    means = torch.stack([b.mean(2) for b in _key_blocks(_heads(k, q.shape[1]), block)], 2)
    gate = torch.einsum("bhmd,bhjd->bhmj", q, means)
    j, own = torch.arange(means.shape[2]), torch.arange(M)[:, None] // block
    gate = gate.masked_fill(j > own, float("-inf")).masked_fill(j == own, float("inf"))
    return pick_blocks(gate, top_k)


def quest_blocks(q, k, page, top_k):
    """Quest (Tang et al., 2024): per page the channel-wise min and max of its keys; a query's
    bound is sum_d max(q_d min_d, q_d max_d); the top-k pages (own page kept)."""
    M = q.shape[2]
    pages = _key_blocks(_heads(k, q.shape[1]), page)
    lo, hi = torch.stack([p.amin(2) for p in pages], 2), torch.stack([p.amax(2) for p in pages], 2)
    bound = torch.maximum(q[:, :, :, None] * lo[:, :, None], q[:, :, :, None] * hi[:, :, None]).sum(-1)
    j, own = torch.arange(len(pages)), torch.arange(M)[:, None] // page
    bound = bound.masked_fill(j > own, float("-inf")).masked_fill(j == own, float("inf"))
    return pick_blocks(bound, top_k)


def nsa_blocks(q, k, block, top_k):
    """NSA's selection (Yuan et al., 2025) with l = l' = d = block and mean compression:
    p_cmp = softmax over complete blocks of q . mean(K_j) / sqrt(D); summed over the heads of
    each KV group; initial and two local blocks kept; top-n, shared by the group."""
    B, H, M, D = q.shape
    hk = k.shape[1]
    means = torch.stack([b.mean(2) for b in _key_blocks(_heads(k, H), block)], 2)
    nb = means.shape[2]
    j, t = torch.arange(nb), torch.arange(M)[:, None]
    complete = (j + 1) * block <= t + 1
    logits = (torch.einsum("bhmd,bhjd->bhmj", q, means) / math.sqrt(D)).masked_fill(~complete, float("-inf"))
    p_cmp = torch.nan_to_num(torch.softmax(logits, -1), nan=0.0)
    shared = p_cmp.view(B, hk, H // hk, M, nb).sum(2)
    own = t // block
    forced = (j == 0) | (j == own) | (j == own - 1)
    key = torch.where(forced, float("inf"), shared.masked_fill(~complete, float("-inf")))
    return pick_blocks(key, top_k).repeat_interleave(H // hk, 1)


def topk_blocks(q, k, block, top_k, query_block=1):
    """Top-k key blocks per query and head by q . mean(K_j) among blocks starting at or before
    the query; with query_block, per block of queries by their mean query, among the blocks
    starting at or before the block's last query, shared by its rows."""
    means = torch.stack([b.mean(2) for b in _key_blocks(_heads(k, q.shape[1]), block)], 2)
    starts = torch.arange(means.shape[2]) * block
    if query_block == 1:
        gate = torch.einsum("bhmd,bhjd->bhmj", q, means)
        return pick_blocks(gate.masked_fill(starts > torch.arange(q.shape[2])[:, None], float("-inf")), top_k)
    M = q.shape[2]
    rows = []
    for i in range(0, M, query_block):
        mean_q = q[:, :, i:i + query_block].mean(2)
        last = min(M, i + query_block) - 1
        gate = torch.einsum("bhd,bhjd->bhj", mean_q, means).masked_fill(starts > last, float("-inf"))
        chosen = pick_blocks(gate, top_k)
        rows += [chosen] * (min(M, i + query_block) - i)
    return torch.stack(rows, 2)


SELECTIONS = {"moba": (moba_blocks, "block_size"), "quest": (quest_blocks, "page_size"),
              "nsa_selection": (nsa_blocks, "block_size"), "topk_blocks": (topk_blocks, "block_size")}


def selection_mask(name, args, q, k):
    """The dense pair mask [B, H, M, N] of a selection variant on these q, k (causal inside)."""
    fn, size = SELECTIONS[name]
    extra = {"query_block": args["query_block"]} if args.get("query_block", 1) > 1 else {}
    chosen = fn(q, k, args[size], args["top_k"], **extra)
    return block_keys(chosen, args[size], q.shape[2], k.shape[2])


def tile_classes(pairs: torch.Tensor, bm: int, bn: int) -> np.ndarray:
    """Tile classes (0 empty, 1 partial, 2 full) of a dense pair mask [B, H, M, N], brute force."""
    B, H, M, N = pairs.shape
    nq, nk = -(-M // bm), -(-N // bn)
    out = np.zeros((B, H, nq, nk), dtype=np.int64)
    for i in range(nq):
        for j in range(nk):
            tile = pairs[:, :, i * bm:(i + 1) * bm, j * bn:(j + 1) * bn].reshape(B, H, -1)
            out[:, :, i, j] = np.where(tile.all(-1).numpy(), 2, np.where(tile.any(-1).numpy(), 1, 0))
    return out


def layout_classes(layout) -> np.ndarray:
    B, H = layout.shape
    return np.stack([np.stack([layout.class_grid(b, h) for h in range(H)]) for b in range(B)])


def grid(q_len, kv_len):
    i = torch.arange(q_len)[:, None]
    j = torch.arange(kv_len)[None, :]
    return i, j


# --- grids: token order and per-axis masks --------------------------------------------------

def token_coordinates(shape, tile=None) -> torch.Tensor:
    """[tokens, ndim] coordinates in 1-D token order: row-major, or tile-major (tiles in
    row-major order, row-major inside each tile), built by enumeration."""
    if tile is None:
        return torch.tensor(list(itertools.product(*(range(n) for n in shape))))
    tiles = itertools.product(*(range(n // t) for n, t in zip(shape, tile)))
    coords = []
    for corner in tiles:
        for offset in itertools.product(*(range(t) for t in tile)):
            coords.append([c * t + o for c, t, o in zip(corner, tile, offset)])
    return torch.tensor(coords)


def na_axis(n, k, d=1, s=1) -> torch.Tensor:
    """NATTEN's neighborhood on one axis: [n, n] bool, by walking each dilation group."""
    out = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        members = list(range(i % d, n, d))
        pos = members.index(i)
        leader = min((pos // s) * s + s // 2, len(members) - 1)
        start = min(max(leader - k // 2, 0), len(members) - k)
        for jj in range(start, start + k):
            out[i, members[jj]] = True
    return out


def grid_mask(shape, tile, axis_masks) -> torch.Tensor:
    coords = token_coordinates(shape, tile)
    out = torch.ones(len(coords), len(coords), dtype=torch.bool)
    for a, m in enumerate(axis_masks):
        out &= m[coords[:, a][:, None], coords[:, a][None, :]]
    return out


def _axis(value, nd):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * nd


def neighborhood_mask(shape, window, dilation=1, stride=1, tile=None):
    nd = len(shape)
    k, d, s = _axis(window, nd), _axis(dilation, nd), _axis(stride, nd)
    return grid_mask(shape, tile, [na_axis(shape[a], k[a], d[a], s[a]) for a in range(nd)])


def window_mask(shape, window, shift=0, tile=None):
    nd = len(shape)
    P, sh = _axis(window, nd), _axis(shift, nd)
    axes = []
    for a in range(nd):
        w = (torch.arange(shape[a]) + sh[a]) // P[a]
        axes.append(w[:, None] == w[None, :])
    return grid_mask(shape, tile, axes)


def grid_attention_mask(shape, grid_size, tile=None):
    nd = len(shape)
    G = _axis(grid_size, nd)
    axes = []
    for a in range(nd):
        r = torch.arange(shape[a]) % (shape[a] // G[a])
        axes.append(r[:, None] == r[None, :])
    return grid_mask(shape, tile, axes)


# --- T5 buckets, as in the T5 / HF reference implementation ---------------------------------

def t5_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, relative_position, large)


# --- the oracle for each registry entry ------------------------------------------------------

def mask_oracle(name: str, args: dict, tensors: dict, B: int, H: int, Sq: int, Skv: int):
    """Dense bool mask [B, H, Sq, Skv] (or broadcastable) for mask variants."""
    i, j = grid(Sq, Skv)
    a = args
    if name in ("causal", "gqa", "differential", "sigmoid_attention", "causal_linear", "gated_attention"):
        return i >= j
    if name in ("sliding_window", "learned_sinks"):
        return (i >= j) & (i - j < a["window"])
    if name == "streaming":
        return (i >= j) & ((j < a["sinks"]) | (i - j < a["window"]))
    if name == "prefix_lm":
        return ((j[None] < tensors["prefix_len"].long()[:, None, None]) | (i >= j)[None])[:, None]
    if name in ("document", "document_sinks"):
        doc = tensors["doc"].long()
        same = doc[:, :Sq, None] == doc[:, None, :Skv]
        if name == "document_sinks":
            same = same | tensors["is_sink"][:, None, :Skv]
        return (same & (i >= j)[None])[:, None]
    if name == "dilated_sliding_window":
        dist = i - j
        return (dist >= 0) & (dist < a["window"] * a["dilation"]) & (dist % a["dilation"] == 0)
    if name == "global_window":
        return (i < a["global_tokens"]) | (j < a["global_tokens"]) | ((i - j).abs() < a["window"])
    if name == "s2_attention":
        h = torch.arange(H)[:, None, None]
        own = (j // a["block"]) % a["shards"] == h % a["shards"]
        return (i >= j) & (own | (i - j < a["window"]))
    if name == "strided_heads":
        h = torch.arange(H)[:, None, None]
        return (j % a["stride"] == h % a["stride"]).expand(H, Sq, Skv)
    if name == "power_attention":
        dist = i - j
        pow2 = torch.tensor([x > 0 and (x & (x - 1)) == 0 for x in dist.flatten().tolist()]).reshape(dist.shape)
        return (dist >= 0) & ((dist < a["window"]) | pow2)
    if name == "blockwise_causal":
        return i // a["chunk"] >= j // a["chunk"]
    if name == "block_diagonal":
        return i // a["chunk"] == j // a["chunk"]
    if "neighborhood" in name:
        return neighborhood_mask(a["shape"], a["window"], a.get("dilation", 1), a.get("stride", 1), a.get("tile"))
    if name in ("swin", "maxvit_block"):
        return window_mask(a["shape"], a["window"], a.get("shift", 0), a.get("tile"))
    if name == "maxvit_grid":
        return grid_attention_mask(a["shape"], a["grid"], a.get("tile"))
    if name == "per_head_window":
        w = tensors["head_window"].long()[:, None, None]
        return (i >= j) & (i - j < w)
    if name == "causal_score":
        return i >= j
    return None


def bias_oracle(name: str, args: dict, tensors: dict, B: int, H: int, Sq: int, Skv: int):
    """Additive score bias [.., Sq, Skv] for bias-type score mods, float64."""
    i, j = grid(Sq, Skv)
    if name == "alibi":
        slopes = torch.tensor([2.0 ** (-8.0 * (x + 1) / H) for x in range(H)], dtype=torch.float64)
        return slopes[:, None, None] * (j - i)
    if name == "t5_bias":
        bucket = t5_bucket(j - i, args.get("bidirectional", True), args.get("num_buckets", 32),
                           args.get("max_distance", 128))
        return tensors["rel_bias"].double()[:, bucket]
    if name == "sink_scaling":
        return tensors["log_gamma"].double()[:, None, None] * (j == 0)
    if name == "token_type_bias":
        types = tensors["token_type"].long()
        return tensors["type_bias"].double()[types[:, :Sq, None], types[:, None, :Skv]][:, None]
    return None


def cascade_oracle(name: str, args: dict, inputs: dict, Sq: int, Skv: int):
    """Outputs of the cascade variants from their paper formulas, float64."""
    i, j = grid(Sq, Skv)
    causal = i >= j
    if name == "differential":
        x = inputs
        return sdpa(x["Q1"], x["K1"], x["V"], causal) - args["lam"] * sdpa(x["Q2"], x["K2"], x["V"], causal)
    if name == "sigmoid_attention":
        q, k, v = inputs["Q"], inputs["K"], inputs["V"]
        w = torch.sigmoid(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + args["bias"]) * causal
        return w @ v
    if name == "causal_linear":
        # recurrent form: state_j = sum_{t <= j} phi(k_t)^T v_t ; o_i = phi(q_i) state_{min(i, Skv-1)}
        phi = {"elu": lambda x: F.elu(x) + 1, "relu": torch.relu, "identity": lambda x: x}[args.get("feature", "elu")]
        q, k, v = phi(inputs["Q"]), phi(inputs["K"]), inputs["V"]
        state = torch.cumsum(torch.einsum("bhnd,bhne->bhnde", k, v), dim=2)
        norm = torch.cumsum(k, dim=2)
        rows = torch.clamp(torch.arange(Sq), max=Skv - 1)
        out = torch.einsum("bhmd,bhmde->bhme", q, state[:, :, rows])
        if args.get("normalize"):
            out = out / (torch.einsum("bhmd,bhmd->bhm", q, norm[:, :, rows])[..., None] + args.get("eps", 1e-6))
        return out
    if name == "gated_attention":
        x = inputs
        gate = torch.sigmoid(torch.einsum("bmc,hce->bhme", x["X"], x["Wg"]))
        return sdpa(x["Q"], x["K"], x["V"], causal) * gate
    return None


def oracle(name: str, args: dict, tensors: dict, inputs: dict, Sq: int, Skv: int):
    """Expected output of registry variant ``name`` on float64 ``inputs``."""
    B, H = inputs[next(iter(inputs))].shape[:2]
    out = cascade_oracle(name, args, inputs, Sq, Skv)
    if out is not None:
        return out
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    if name in SELECTIONS:
        return sdpa(q, k, v, mask=selection_mask(name, args, q, k))
    if name == "learned_sinks":
        mask = mask_oracle(name, args, tensors, B, H, Sq, Skv).expand(B, H, Sq, Skv)
        return sink_attention(q, k, v, tensors["sinks"], mask)
    if name == "softcap":
        cap = args["cap"]
        return attend_scores(q, k, v, lambda s: cap * torch.tanh(s / cap))
    mask = mask_oracle(name, args, tensors, B, H, Sq, Skv)
    bias = bias_oracle(name, args, tensors, B, H, Sq, Skv)
    if mask is None and bias is None:
        raise KeyError(f"no oracle for {name}")
    if mask is not None:
        mask = mask.expand(B, H, Sq, Skv) if mask.dim() <= 4 else mask
    if bias is not None:
        bias = torch.as_tensor(bias, dtype=torch.float64).expand(B, H, Sq, Skv)
    return sdpa(q, k, v, mask=mask, bias=bias)


# --- softplus / log-sigmoid, from their formulas -----------------------------------------

def softplus(x):
    """torch.nn.functional.softplus with beta=1, threshold=20: log(1 + e^x), and x itself
    where x > 20."""
    return torch.where(x > 20, x, torch.log1p(torch.exp(torch.clamp(x, max=20))))


def logsigmoid(x):
    """log(1 / (1 + e^-x)) = min(x, 0) - log(1 + e^-|x|)."""
    return torch.clamp(x, max=0) - torch.log1p(torch.exp(-x.abs()))
