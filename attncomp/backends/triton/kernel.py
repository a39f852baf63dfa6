"""The Triton backend's kernel object: plan, generated module, launch.

On CUDA tensors the module is compiled by Triton; on CPU tensors it is run by Triton's
interpreter (``TRITON_INTERPRET=1``), which is how the tests check every kernel on
machines without a GPU.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from ...errors import AttncompError, UnsupportedError
from ...ir.arguments import block_shape, flag
from ...ir.analysis import analyze, selected
from ...ir.selection import Chooser, index_lists
from ...ir.dtypes import refuse_unfaithful
from ...ir.plan import Plan
from ...ir.program import Program
from ..binding import Bound
from ..cache import CallCache
from ..modules import load_module
from ..registry import Kernel, register
from .codegen import differentiable, generate_source
from .grouped import fold_heads, heads_of, rows_of
from ...ir.lowering import lower
from .syntax import MAX_LEN


def interpreter_ready() -> bool:
    """Make Triton run kernels in its interpreter (for CPU tensors), if it still can.

    Triton picks interpreter or compiler when a function is decorated, its own library
    included, so the switch must happen before ``import triton``: then we set
    ``TRITON_INTERPRET=1`` for the process; afterwards only if it was already set."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    if "triton" in sys.modules:
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    return True


# the interpreter is slow at 64 x 64 tiles: the report's CPU check uses 32 x 32
@register("triton", "Triton", check_options={"block": (32, 32)})
class TritonKernel(Kernel):
    """``kernel(*inputs, **tensors)`` through a generated Triton kernel.

    ``block`` is (BLOCK_M, BLOCK_N), the tile of both the kernel and the analysis;
    ``store_lse`` also returns the logsumexp of single-softmax kernels; after a call
    with ``count=True``, ``kernel.last_stats`` holds per program (partial tiles, full
    tiles visited, mask evaluations, runs of full tiles read as prefix states: linear
    terms do not visit full tiles).

    Single-softmax variants (a mask, a score mod, captured tensors, GQA) are differentiable:
    FlashAttention-2's backward, generated from the same template (``kernel.source``): a dQ
    pass over each row's tile lists and a dK/dV pass over each column's, p recomputed from
    the row max and sum the forward saved, the score mod's derivative from
    :mod:`attncomp.ir.autodiff`, captured float tensors' gradients scattered with float64
    atomics. After a backward with ``count=True``, ``kernel.last_backward_stats`` holds per
    program of each pass (tiles visited, mask evaluations).

    A selection stage (MoBA, NSA, Quest) is chosen from each call's Q and K on their device,
    a chunk of rows at a time; the query tiles visit the union of their rows' chosen blocks,
    and partial tiles test each row's chosen block list, in the backward kernels too (the
    choice itself has no gradient).

    >>> import torch, attncomp as ac
    >>> kernel = ac.compile(ac.variants.causal(), backend="triton", block=(16, 16))
    >>> q = k = v = torch.randn(1, 1, 40, 16)
    >>> bool(torch.allclose(kernel(q, k, v), ac.compile(ac.variants.causal())(q, k, v), atol=1e-5))
    True
    """

    selects = True

    def __init__(self, spec: Program | Plan, block=(64, 64), store_lse: bool = False, count: bool = False):
        super().__init__(spec)
        refuse_unfaithful(self.program.mask, "Triton", self.spec.name)
        self.lowered = lower(self.program)
        self.visits_full = any(t.kind != "linear" for t in self.lowered.terms)
        # FlashAttention-2 backward kernels for single-softmax variants; others refuse grads
        self.differentiable = differentiable(self.lowered)
        self.last_backward_stats = None
        # tl.arange needs powers of two and tl.dot at least 16 rows and columns
        self.block = block_shape(block, self.spec.name, power_of_two=True, minimum=16)
        self.store_lse, self.count = flag("store_lse", store_lse, self.spec.name), flag("count", count, self.spec.name)
        self.source = generate_source(self.program, self.lowered)
        self._module: dict | None = None
        self.cache, self.column_cache = CallCache(), CallCache()
        self.groups: dict[int, TritonKernel | None] = {}  # group-centric kernels by query heads per KV head
        self.last_stats = self.last_layout = None
        self.last_lse = None

    def module(self, device: torch.device) -> dict:
        """The loaded module; CPU tensors need Triton's interpreter."""
        if device.type != "cuda" and not interpreter_ready():
            raise UnsupportedError("Triton kernels run on CPU tensors only in Triton's interpreter, which must be "
                                   "chosen before triton is imported", variant=self.spec.name,
                                   hint="Set TRITON_INTERPRET=1 in the environment (or pass CUDA tensors)")
        if self._module is None:
            self._module = load_module(self.source, f"attncomp_triton_{self.spec.name}")
        return self._module

    def layout(self, bound):
        return analyze(self.plan, bound.sizes["m"], bound.sizes["n"], self.block, tensors=bound.tensors,
                       batch=bound.sizes.get("b", 1), heads=bound.sizes.get("h", 1))

    def blocks(self, bound, device):
        """(layout, block-list tensors) for a bound call, cached (a selection stage's are made
        from the call's own Q and K: see :meth:`select`)."""
        if self.spec.selection is not None:
            return self.select(bound, device)[:2]
        def build():
            layout = self.layout(bound)
            as_t = lambda a: torch.from_numpy(a.astype("int32")).to(device)
            partial = layout.partial.csr()  # the launch needs tile lists
            # full tiles as lists only where a term walks them; linear terms read runs of them
            full = layout.full.csr() if self.visits_full else None
            unused = torch.zeros(1, dtype=torch.int32, device=device)
            runs = layout.full
            return layout, (as_t(partial.offsets), as_t(partial.indices),
                            as_t(full.offsets) if full else unused, as_t(full.indices) if full else unused,
                            as_t(runs.offsets), as_t(runs.start), as_t(runs.stop))
        return self.cache.get(bound, device, build)

    def select(self, bound, device):
        """(layout, block lists, chosen blocks) of a selection stage for this call's data: the
        choice made once, on the inputs' device, by row chunk; the layout exact for it."""
        plan = self.plan
        sel = plan.program.selection
        lists: list = []
        layout = selected.from_data(
            plan.program, lambda p: analyze(p, bound.sizes["m"], bound.sizes["n"], self.block, tensors=bound.tensors,
                                            batch=bound.sizes.get("b", 1), heads=bound.sizes.get("h", 1)),
            {sel.q: bound.inputs[sel.q], sel.k: bound.inputs[sel.k]}, bound.tensors, bound.params, self.block,
            time.perf_counter(), lists)
        return layout, _blocks(layout, device), selected.chosen_lists(lists).to(device)

    def columns(self, bound, device, layout):
        """Per key block, its partial and full query blocks (the dK/dV pass walks columns):
        the layout's rows transposed, as int32 tensors, cached (not for a selection stage,
        whose layout is the call's data's)."""
        def build():
            nq, nk = layout.num_q_blocks, layout.num_kv_blocks
            out = []
            for csr in (layout.partial.csr(), layout.full.csr()):
                rows = np.repeat(np.arange(len(csr.offsets) - 1), np.diff(csr.offsets))
                column = rows // nq * nk + csr.indices  # (group, key block)
                order = np.argsort(column, kind="stable")
                offsets = np.zeros(layout.groups * nk + 1, dtype=np.int64)
                offsets[1:] = np.cumsum(np.bincount(column, minlength=layout.groups * nk))
                out += [offsets, (rows % nq)[order]]
            return tuple(torch.from_numpy(a.astype("int32")).to(device) for a in out)
        return build() if self.spec.selection is not None else self.column_cache.get(bound, device, build)

    def run(self, bound: Bound) -> torch.Tensor:
        device = bound.device
        if max(bound.sizes["m"], bound.sizes["n"]) > MAX_LEN:
            raise AttncompError(f"the Triton kernel computes index arithmetic in int32 where it is proven to fit for "
                                f"sequences up to {MAX_LEN} tokens; got {bound.sizes['m']} x {bound.sizes['n']}",
                                variant=self.spec.name, hint="Split the sequence or use backend='flex'")
        sel = self.spec.selection
        if sel is not None and sel.shared and self.grouped(bound) is not None:
            return self.run_grouped(bound)
        if sel is not None:
            layout, blocks, chosen = self.select(bound, device)
        else:
            (layout, blocks), chosen = self.blocks(bound, device), None
        inputs = [bound.inputs[n] for n in self.lowered.inputs]
        runtime = [bound.tensors[t] for t in self.program.tensors] + ([chosen] if chosen is not None else [])
        return self.launch(bound, layout, blocks, inputs, runtime)

    def grouped(self, bound) -> TritonKernel | None:
        """The kernel on rows of (token, head) pairs for this call's group size (NSA's
        group-centric loading; :mod:`.grouped`), or None where it does not apply: one head per
        KV head, inputs beyond Q, K and V, or runtime tensors sized by the query heads."""
        sel = self.spec.selection
        group = bound.inputs[sel.q].shape[1] // bound.inputs[sel.k].shape[1]
        if group == 1 or set(self.lowered.inputs) != {sel.q, sel.k, self.lowered.v} or any(
                "H" in t.dims for t in self.program.tensors.values()):
            return None
        if group not in self.groups:
            folded = fold_heads(self.spec, group)
            self.groups[group] = None if folded is None else TritonKernel(folded, self.block, self.store_lse,
                                                                          self.count)
        return self.groups[group]

    def run_grouped(self, bound) -> torch.Tensor:
        """Q as [B, H_kv, M * G, D]; the choice is the original heads' (shared by the group),
        read by row r at token r // G; the output back to [B, H, M, Dv]."""
        kernel, sel = self.grouped(bound), self.spec.selection
        q, k = bound.inputs[sel.q], bound.inputs[sel.k]
        B, H, M, _ = q.shape
        group, device = H // k.shape[1], bound.device
        chooser = Chooser(sel, q.detach(), k.detach(), bound.tensors, bound.params, self.spec.name)
        lists: list = []

        def choice(rows: torch.Tensor) -> torch.Tensor:
            chosen = chooser(torch.div(rows, group, rounding_mode="floor"))
            lists.append(index_lists(chosen))
            return chosen
        program = kernel.plan.program
        static = analyze(replace(program, selection=None), M * group, k.shape[2], self.block, tensors=bound.tensors,
                         batch=B, heads=k.shape[1])
        layout = selected.combine(program, static, choice, (B, k.shape[1]), bound.params, self.block,
                                  time.perf_counter())
        inputs = {sel.q: rows_of(q, k.shape[1]), sel.k: k, self.lowered.v: bound.inputs[self.lowered.v]}
        runtime = [bound.tensors[t] for t in self.program.tensors] + [selected.chosen_lists(lists).to(device)]
        out = kernel.launch(bound, layout, _blocks(layout, device), [inputs[n] for n in kernel.lowered.inputs],
                            runtime, owner=self)
        lse = kernel.last_lse
        self.last_stats, self.last_layout = kernel.last_stats, layout
        self.last_lse = heads_of(lse[..., None], H)[..., 0] if lse is not None else None
        return heads_of(out, H)

    def launch(self, bound, layout, blocks, inputs: list, runtime: list, owner: TritonKernel | None = None
               ) -> torch.Tensor:
        """The forward kernel on ``layout``'s tile lists ``blocks`` (with the backward tied on
        where an input requires grad; its stats go to ``owner``, the kernel the user called)."""
        device = bound.device
        fn = self.module(device)["attention"]
        self.last_layout = layout
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs + runtime):
            return _Attention.apply(self, bound, (layout, blocks, owner or self), *inputs, *runtime)
        with torch.no_grad():
            out, lse, stats = fn(*inputs, *runtime, blocks, layout_shape=layout.shape, block_m=self.block[0],
                                 block_n=self.block[1], store_lse=self.store_lse, count=self.count,
                                 wide_prefix=bool((layout.full.start > 0).any()))
        self.last_stats, self.last_lse = stats, lse
        return out

    def __repr__(self) -> str:
        return f"TritonKernel({self.spec.name}, block={self.block})"


def _blocks(layout, device) -> tuple[torch.Tensor, ...]:
    """A layout's tile lists and runs of full tiles, as the launch takes them."""
    as_t = lambda a: torch.from_numpy(a.astype("int32")).to(device)  # noqa: E731
    partial, full, runs = layout.partial.csr(), layout.full.csr(), layout.full
    return (as_t(partial.offsets), as_t(partial.indices), as_t(full.offsets), as_t(full.indices),
            as_t(runs.offsets), as_t(runs.start), as_t(runs.stop))


class _Attention(torch.autograd.Function):
    """Ties the generated forward (which saves the logsumexp) to the generated backward
    kernels: dQ over rows, dK/dV over columns, captured float tensors by atomics."""

    @staticmethod
    def forward(ctx, kernel: TritonKernel, bound: Bound, lists: tuple, *tensors: torch.Tensor):
        layout, blocks, _ = lists  # the forward's: a selection stage's are this call's data's
        module = kernel.module(bound.device)
        q = tensors[0]
        rows = torch.empty((*q.shape[:3], 2), dtype=torch.float32, device=q.device)  # each row's max and sum
        with torch.no_grad():
            out, lse, stats = module["attention"](*tensors, blocks, layout_shape=layout.shape,
                                                  block_m=kernel.block[0], block_n=kernel.block[1],
                                                  store_lse=kernel.store_lse, count=kernel.count, rows=rows)
        kernel.last_stats, kernel.last_lse = stats, lse
        ctx.kernel, ctx.bound, ctx.lists = kernel, bound, lists
        ctx.save_for_backward(*tensors, out, rows)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        kernel, bound = ctx.kernel, ctx.bound
        *tensors, out, rows = ctx.saved_tensors
        layout, blocks, owner = ctx.lists
        columns = kernel.columns(bound, bound.device, layout)
        with torch.no_grad():
            dq, dk, dv, captured, stats = kernel.module(bound.device)["backward"](
                *tensors, out, rows, grad_out, blocks, columns, layout_shape=layout.shape, block_m=kernel.block[0],
                block_n=kernel.block[1], count=kernel.count)
        owner.last_backward_stats = stats
        term = kernel.lowered.terms[0]
        by_name = {term.scores.q: dq, term.scores.k: dk, kernel.lowered.v: dv, **captured}
        names = kernel.lowered.inputs + list(kernel.program.tensors) + ["<chosen blocks>"] * (kernel.spec.selection
                                                                                           is not None)
        grads = [by_name.get(n) if t.requires_grad else None for n, t in zip(names, tensors)]
        return (None, None, None, *grads)
