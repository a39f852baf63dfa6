"""Generating the Triton module (kernel + launch wrapper) from a KernelPlan.

The module is ``template.py`` with its holes filled (that file lists them): one
flash-attention skeleton with names from Triton's fused-attention tutorial (``offs_m``,
``offs_n``, ``m_i``, ``l_i``, ``acc``; exponentials in base 2 with the log2(e) scale). A
program owns one query tile of one (batch, head); one loop function walks its row's partial
key blocks with the mask applied, then its full key blocks without it (``IS_FULL``). Block
lists are the BlockLayout's compressed rows, so empty blocks are never visited. This module
writes only the variant's pieces: the mask, the score expressions and state updates of
each term, the epilogue, and the names and parameters they read. Linear terms also get
the states kernel's body and the loads of their prefix states per run of full blocks.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ...ir import expr as E
from ...ir.program import Program
from ...ir.autodiff import ONE, NoDerivative, derivative, float_loads
from ...ir.lowering import QK, KernelPlan, X
from .syntax import HELPERS, TritonPrinter

RESERVED = {"Out", "Lse", "Rows", "Stats", "H", "P_OFF", "P_IDX", "F_OFF", "F_IDX", "R_OFF", "R_START", "R_STOP", "PS", "PZ",
            "IDX", "CONFIGS", "tuned", "tl", "triton", "torch", "functools"}
HOLE = re.compile(r"^( *)# <<(\w+)>>")
SECTION = re.compile(r"^ *# <<(if|end) (\w+)>>")
INDEX_NAMES = ("q_idx", "off_b", "off_h", "sm_scale", "qk_scale")  # kernel values the loop's expressions may read


@functools.cache
def template() -> str:
    """The skeleton, from its ``# <<docstring>>`` hole on (what precedes it documents the file)."""
    text = Path(__file__).with_name("template.py").read_text()
    return text[text.index("# <<docstring>>"):]


def fill(skeleton: str, holes: dict[str, list[str]], sections: dict[str, bool] | None = None) -> str:
    """``skeleton`` with every hole line ``# <<name>>`` replaced by the lines ``holes[name]``
    at the marker's indentation (none: the line goes), and the lines between ``# <<if name>>``
    and ``# <<end name>>`` kept only where ``sections[name]`` holds.

    >>> print(fill("def f():\\n    # <<body>> what f returns\\n", {"body": ["x = 1", "return x"]}), end="")
    def f():
        x = 1
        return x
    >>> print(fill("a\\n# <<if extra>>\\nb\\n# <<end extra>>\\n", {}, {"extra": False}), end="")
    a
    """
    out, seen, skipping = [], set(), None
    for line in skeleton.splitlines():
        section = SECTION.match(line)
        if section is not None:
            kind, name = section.groups()
            if kind == "if" and not (sections or {})[name]:
                skipping = name
            elif kind == "end" and skipping == name:
                skipping = None
            continue
        match = HOLE.match(line)
        if skipping is not None:  # a hole in a dropped section is filled with nothing
            seen |= {match.group(2)} if match else set()
            continue
        if match is None:
            out.append(line)
            continue
        indent, name = match.groups()
        seen.add(name)
        out += [indent + piece if piece else "" for text in holes[name] for piece in text.split("\n")]
    if seen != set(holes):
        raise ValueError(f"holes filled but not in the skeleton: {sorted(set(holes) - seen)}")
    return "\n".join(out) + "\n"


class _Gen:
    def __init__(self, program: Program, plan: KernelPlan):
        self.program, self.plan = program, plan
        self.single = len(plan.terms) == 1
        self.linear = [i for i, t in enumerate(plan.terms) if t.kind == "linear"]  # chunked, via prefix states
        self.backward = differentiable(plan)
        self.names = {"m": "q_idx", "n": "kv_idx", "b": "off_b", "h": "off_h"}
        for i in range(len(plan.terms)):
            self.names[f"acc{i}"] = self.n("acc", i)
            self.names[f"rowsum{i}"] = f"{self.n('rowsum', i)}[:, None]"
        for j in range(len(plan.gates)):
            self.names[f"gate{j}"] = f"gate{j}"
        self.printer = TritonPrinter(self.names)
        self.tensors = list(program.tensors.values())
        self.reads: set[str] = set()          # INDEX_NAMES the printed code reads, since the last scope()
        self.tensors_read: dict[str, set[int]] = {}  # runtime tensors it loads from -> dims it bounds-checks

    def n(self, base: str, i: int) -> str:
        return base if self.single else f"{base}{i}"

    def expr(self, e: E.Expr, **extra: str) -> str:
        self.reads |= {self.names[x] for x in E.letters_of(e) & {"m", "b", "h"}}
        self.reads |= {"sm_scale"} if "scale" in E.params_of(e) else set()
        for node in E.walk(e):
            if node.op == "load":  # the printer bounds-checks the dims indexed by q_idx or kv_idx
                self.tensors_read.setdefault(node.arg.name, set()).update(
                    i for i, s in enumerate(node.src) if E.letters_of(s) & {"m", "n"})
        saved = dict(self.printer.names)
        self.printer.names.update(extra)
        try:
            return self.printer(e)
        finally:
            self.printer.names = saved

    def scope(self) -> tuple[set[str], dict[str, set[int]]]:
        """What the code printed since the last call reads (index names, tensors); starts anew."""
        reads, self.reads, tensors, self.tensors_read = self.reads, set(), self.tensors_read, {}
        return reads, tensors

    def letters(self, name: str) -> tuple[str, ...]:
        return self.program.input(name).letters

    def pointer(self, name: str, loop: bool = False) -> str:
        """An input's pointer with its strides, as parameters. The kernel gives a key-side input
        its head group (query heads per head of its own: grouped-query attention, per input) and
        offsets the pointer to that head, so the loop function takes it without a head stride."""
        if loop:
            return ", ".join([name] + [f"stride_{name}_{x}" for x in self.letters(name) if x != "h"]) + ","
        group = [f"GROUPS_{name}"] if name in self.key_side() else []
        return ", ".join([name] + [f"stride_{name}_{x}" for x in self.letters(name)] + group) + ","

    def key_side(self) -> list[str]:
        """The plan's per-head inputs over the key index: loaded per K/V head, which may be fewer."""
        return [n for n in self.plan.inputs if {"n", "h"} <= set(self.letters(n))]

    def tensor_params(self, tensors: dict[str, set[int]] | None = None) -> list[str]:
        """Runtime tensors as parameters: pointer, strides and sizes (all of them, or those in
        ``tensors`` with the sizes of the dims it bounds-checks)."""
        dims = {t.name: range(len(t.dims)) for t in self.tensors} if tensors is None else tensors
        return [", ".join([f"{t.name}_ptr"] + [f"{t.name}_s{i}" for i in range(len(t.dims))] +
                          [f"{t.name}_n{i}" for i in sorted(dims[t.name])]) + ","
                for t in self.tensors if t.name in dims]

    @staticmethod
    def plain_scale(t) -> bool:
        """Softmax logits that are just q.k * scale: one multiply by a folded scale * log2(e)."""
        return t.kind == "softmax" and t.logits == E.binary("mul", QK, E.param("scale", None))

    # --- the loop function -----------------------------------------------------------------
    def state(self) -> list[str]:
        """What each term carries through the key loop, one line per term."""
        lines = []
        for i, t in enumerate(self.plan.terms):
            names = ["acc"] + ["l_i", "m_i"] * (t.kind == "softmax") + ["rowsum"] * t.rowsum
            lines.append(", ".join(self.n(x, i) for x in names) + ",")
        return lines

    def mask(self, first: bool = True) -> list[str]:
        """``keep`` narrowed by the mask (from ``col_ok`` when ``first``) and by the rows' chosen
        key blocks; none: no mask, no partial tiles."""
        lines = [f"keep = {'col_ok' if first else 'keep'} & ({self.expr(self.plan.mask)})"] \
            if self.plan.mask is not None else []
        if self.plan.selection is not None:  # sel: the row's chosen key blocks, -1 padded
            blk = f"(kv_idx // ({self.expr(self.plan.selection.block)}))"
            lines.append(f"keep = keep & (tl.sum((sel[:, :, None] == {blk}[:, None, :]).to(tl.int32), 1) > 0)"
                         "  # the data chose the key's block")
        return lines

    def chosen(self) -> list[str]:
        """The query tile's rows' chosen key blocks, ``sel`` [BLOCK_M, SEL_WP] (-1: none)."""
        if self.plan.selection is None:
            return []
        return ["offs_w = tl.arange(0, SEL_WP)",
                "sel = tl.load(Sel + ((b64 * SEL_H + off_h // (H // SEL_H)) * q_len + m64)[:, None] * SEL_W"
                " + offs_w[None, :],",
                "              mask=row_ok[:, None] & (offs_w[None, :] < SEL_W), other=-1)  # the rows' choices"]

    def load_k(self, i: int) -> list[str]:
        t = self.plan.terms[i]
        name, k = t.scores.k, self.n("k", i)
        lines = [f"{k} = tl.load({name} + b64 * stride_{name}_b"
                 f" + n64[None, :] * stride_{name}_n + offs_d[:, None] * stride_{name}_d,",
                 "            mask=col_ok & (offs_d[:, None] < HEAD_DIM), other=0.0)"]
        if t.scores.phi_k is not None or t.kind == "linear":
            phi = self.expr(t.scores.phi_k or X, x=f"{k}.to(tl.float32)")
            lines.append(f"{k} = tl.where(col_ok & (offs_d[:, None] < HEAD_DIM), {phi}, 0.0)  # phi(k)")
        return lines

    def load_v(self) -> list[str]:
        v = self.plan.v
        return [f"v = tl.load({v} + b64 * stride_{v}_b"
                f" + n64[:, None] * stride_{v}_n + offs_e[None, :] * stride_{v}_e,",
                "            mask=((start_n + offs_n)[:, None] < kv_len) & (offs_e[None, :] < HEAD_DIM_V), other=0.0)"]

    def scores(self) -> list[str]:
        """The V tile, then per term: its K tile, scores, weights and state update."""
        lines = self.load_v()
        for i, t in enumerate(self.plan.terms):
            q, k, acc, qk = self.n("q", i), self.n("k", i), self.n("acc", i), self.n("qk", i)
            update = [f"{qk} = tl.dot({q}, {k}, input_precision=DOT_PRECISION)"]
            if t.kind == "softmax":
                m_i, l_i = self.n("m_i", i), self.n("l_i", i)
                scaled = f"{qk} * qk_scale" if self.plain_scale(t) else f"({self.expr(t.logits, qk=qk)}) * LOG2E"
                update += [f"s = tl.where(keep, {scaled}, float(\"-inf\"))  # base-2 logits",
                           f"m_new = tl.maximum({m_i}, tl.max(s, 1))",
                           "m_safe = tl.where(m_new == float(\"-inf\"), 0.0, m_new)  # rows with nothing yet",
                           "p = tl.exp2(s - m_safe[:, None])",
                           f"alpha = tl.exp2({m_i} - m_safe)",
                           f"{l_i} = {l_i} * alpha + tl.sum(p, 1)",
                           f"{acc} = {acc} * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)",
                           f"{m_i} = m_new"]
            else:
                update += [f"w = tl.where(keep, {self.expr(t.logits, qk=qk)}, 0.0)  # weights, no normalizer",
                           f"{acc} += tl.dot(w.to(tl.float32), v.to(tl.float32), input_precision=DOT_PRECISION)"]
                if t.rowsum:
                    update.append(f"{self.n('rowsum', i)} += tl.sum(w, 1)")
            if t.kind != "linear":
                lines += self.load_k(i) + update
                continue
            # linear attention, chunked: full tiles come from the prefix states (the runs hole)
            lines += ["if not IS_FULL:  # a partial tile: the masked quadratic form"]
            lines += ["    " + line for line in self.load_k(i) + update]
        return lines

    # --- linear terms: the states kernel and the prefix states per run --------------------------
    def state_inputs(self) -> list[str]:
        """The inputs the states kernel reads: the linear terms' K and the V."""
        return list(dict.fromkeys([self.plan.terms[i].scores.k for i in self.linear] + [self.plan.v])) \
            if self.linear else []

    def states(self) -> dict[str, list[str]]:
        """The states kernel's holes: per key block, each linear term's phi(K_j)^T V_j."""
        names = self.state_inputs()
        params = [", ".join([n] + [f"stride_{n}_{x}" for x in self.letters(n)] + [f"STATE_GROUPS_{n}"]) + ","
                  for n in names]
        heads = [f"{n} += (off_s // STATE_GROUPS_{n}).to(tl.int64) * stride_{n}_h" for n in names]
        body = self.load_v() if self.linear else []
        for t, i in enumerate(self.linear):
            k = self.n("k", i)
            body += self.load_k(i)
            body.append(f"tl.store(PS + (blk + {t}) * (BLOCK_D * BLOCK_DV) + offs_s, "
                        f"tl.dot({k}, v.to(tl.float32), input_precision=DOT_PRECISION).to(PS.dtype.element_ty))")
            if self.plan.terms[i].rowsum:
                body.append(f"tl.store(PZ + (blk + {t}) * BLOCK_D + offs_d, tl.sum({k}, 1).to(PZ.dtype.element_ty))")
        return {"state_params": params, "state_heads": heads, "states": body}

    def runs(self) -> list[str]:
        """Per linear term: the run's state ``P[hi] - P[lo]``, subtracted in the prefix's dtype."""
        lines = []
        for t, i in enumerate(self.linear):
            lines.append(f"{self.n('state', i)} += (tl.load(PS + (hi + {t}) * (BLOCK_D * BLOCK_DV) + offs_s)"
                         f" - tl.load(PS + (lo + {t}) * (BLOCK_D * BLOCK_DV) + offs_s)).to(tl.float32)")
            if self.plan.terms[i].rowsum:
                lines.append(f"{self.n('z', i)} += (tl.load(PZ + (hi + {t}) * BLOCK_D + offs_d)"
                             f" - tl.load(PZ + (lo + {t}) * BLOCK_D + offs_d)).to(tl.float32)")
        return lines

    def launch_states(self) -> list[str]:
        if not self.linear:
            return ["prefix = prefix_z = out  # no linear terms: unused (and wide_prefix too)", "state_group = 1"]
        names = self.state_inputs()
        return [
            f"state_h = math.lcm({', '.join(f'{n}.shape[1]' for n in names)})  # each input's head is a function of it",
            "state_group = H // state_h",
            "# float64 where a run starts past block 0: its P[hi] - P[lo] would cancel in float32",
            "width = torch.float64 if wide_prefix else torch.float32",
            "prefix = torch.zeros((B * state_h, num_k_blocks + 1, N_LINEAR, pow2(D), pow2(DV)), dtype=width, device=q.device)",
            "prefix_z = torch.zeros((B * state_h, num_k_blocks + 1, N_LINEAR, pow2(D)), dtype=width, device=q.device)",
            "attncomp_states[(num_k_blocks, B * state_h)](",
            "    prefix, prefix_z, N, num_k_blocks, state_h, scale,",
            "    " + " ".join(f"{n}, *{n}.stride(), state_h // {n}.shape[1]," for n in names),
            "    HEAD_DIM=D, HEAD_DIM_V=DV, BLOCK_N=block_n, BLOCK_D=pow2(D), BLOCK_DV=pow2(DV), DOT_PRECISION=precision,",
            ")",
            "prefix, prefix_z = prefix.cumsum(1), prefix_z.cumsum(1)  # the prefix sum over key blocks",
        ]

    def reads_hole(self, reads: set[str], tensors: dict[str, set[int]]) -> list[str]:
        """The loop function's variant-specific parameters (and its calls' arguments)."""
        keys = list(dict.fromkeys(t.scores.k for t in self.plan.terms)) + [self.plan.v]
        lines = [", ".join(self.n("q", i) for i in range(len(self.plan.terms))) + ","]
        lines += [self.pointer(name, loop=True) for name in keys] + self.tensor_params(tensors)
        index = [x for x in INDEX_NAMES if x in reads]
        return lines + ([", ".join(index) + ","] if index else []) + (["sel,"] if self.plan.selection else [])

    # --- the kernel --------------------------------------------------------------------------
    def params(self) -> list[str]:
        select = ["Sel, SEL_H, SEL_W, SEL_WP: tl.constexpr,  # the chosen key blocks [B, SEL_H, M, SEL_W]"] \
            if self.plan.selection else []
        return [self.pointer(name) for name in self.plan.inputs] + self.tensor_params() + select

    def load_q(self, i: int) -> list[str]:
        t = self.plan.terms[i]
        name, q = t.scores.q, self.n("q", i)
        lines = [f"{q} = tl.load({name} + b64 * stride_{name}_b + h64 * stride_{name}_h"
                 f" + m64[:, None] * stride_{name}_m + offs_d[None, :] * stride_{name}_d,",
                 "            mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)"]
        if t.scores.phi_q is not None or t.kind == "linear":
            phi = self.expr(t.scores.phi_q or X, x=f"{q}.to(tl.float32)")
            lines.append(f"{q} = tl.where(offs_d[None, :] < HEAD_DIM, {phi}, 0.0)  # feature map phi(q)")
        return lines

    def init(self) -> list[str]:
        lines = []
        for i, t in enumerate(self.plan.terms):
            lines += self.load_q(i)
            lines.append(f"{self.n('acc', i)} = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)")
            if t.kind == "softmax":
                lines += [f"{self.n('l_i', i)} = tl.zeros([BLOCK_M], tl.float32)",
                          f"{self.n('m_i', i)} = tl.full([BLOCK_M], float(\"-inf\"), tl.float32)"]
            if t.kind == "linear":
                lines.append(f"{self.n('state', i)} = tl.zeros([BLOCK_D, BLOCK_DV], tl.float32)  # sum phi(k)^T v")
                if t.rowsum:
                    lines.append(f"{self.n('z', i)} = tl.zeros([BLOCK_D], tl.float32)  # sum phi(k)")
            if t.rowsum:
                lines.append(f"{self.n('rowsum', i)} = tl.zeros([BLOCK_M], tl.float32)")
        return lines

    def sink(self, t) -> str:
        """The term's sink logit per row, base 2, as a [BLOCK_M] vector."""
        return f"tl.max(tl.zeros([BLOCK_M, 1], tl.float32) + ({self.expr(t.sink)}), 1) * LOG2E"

    def epilogue(self) -> list[str]:
        lines = []
        for i, t in enumerate(self.plan.terms):
            acc = self.n("acc", i)
            if t.sink is not None:  # the sink joins the row's max and sum, with no value (gpt-oss)
                m_i, l_i = self.n("m_i", i), self.n("l_i", i)
                lines += [f"sink = {self.sink(t)}",
                          f"m_new = tl.maximum({m_i}, sink)",
                          "m_safe = tl.where(m_new == float(\"-inf\"), 0.0, m_new)",
                          f"alpha = tl.exp2({m_i} - m_safe)",
                          f"{l_i} = {l_i} * alpha + tl.exp2(sink - m_safe)",
                          f"{acc} = {acc} * alpha[:, None]",
                          f"{m_i} = m_new"]
            if t.kind == "softmax":
                l_i = self.n("l_i", i)
                lines.append(f"{acc} = {acc} / tl.where({l_i} == 0.0, 1.0, {l_i})[:, None]  # empty rows give 0")
            if t.kind == "linear":
                lines.append(f"{acc} += tl.dot({self.n('q', i)}, {self.n('state', i)}, input_precision=DOT_PRECISION)")
                if t.rowsum:
                    lines.append(f"{self.n('rowsum', i)} += tl.sum({self.n('q', i)} * {self.n('z', i)}[None, :], 1)")
        for j, (x, w) in enumerate(self.plan.gates):
            lines += [f"x = tl.load({x} + b64 * stride_{x}_b + m64[:, None] * stride_{x}_m"
                      f" + offs_c[None, :] * stride_{x}_c,",
                      "            mask=row_ok[:, None] & (offs_c[None, :] < GATE_DIM), other=0.0)",
                      f"wg = tl.load({w} + h64 * stride_{w}_h + offs_c[:, None] * stride_{w}_c"
                      f" + offs_e[None, :] * stride_{w}_e,",
                      "             mask=(offs_c[:, None] < GATE_DIM) & (offs_e[None, :] < HEAD_DIM_V), other=0.0)",
                      f"gate{j} = tl.dot(x.to(tl.float32), wg.to(tl.float32), input_precision=DOT_PRECISION)"]
        if self.single and self.plan.terms[0].kind == "softmax":
            lines += ["if STORE_LSE:  # natural-log logsumexp of the logits (and sink), -inf for empty rows",
                      "    tl.store(Lse + off_bh.to(tl.int64) * q_len + offs_m, (m_i + tl.log2(l_i)) / LOG2E, mask=row_ok)",
                      "if STORE_ROWS:  # the row's max (base 2) and sum: the backward recomputes p exactly",
                      "    tl.store(Rows + (off_bh.to(tl.int64) * q_len + offs_m) * 2, m_i, mask=row_ok)",
                      "    tl.store(Rows + (off_bh.to(tl.int64) * q_len + offs_m) * 2 + 1, l_i, mask=row_ok)"]
        lines.append(f"out = {self.expr(self.plan.output)}")
        return lines

    def prologue(self, reads: set[str]) -> list[str]:
        heads = [f"{n} += (off_h // GROUPS_{n}).to(tl.int64) * stride_{n}_h  # its head (GQA: shared by a group)"
                 for n in self.key_side()]
        return [*heads, *self.chosen(), *(["offs_c = tl.arange(0, BLOCK_C)"] if self.plan.gates else []),
                *(["q_idx = offs_m[:, None]"] if "q_idx" in reads else []),
                *(["qk_scale = sm_scale * LOG2E"] if "qk_scale" in reads else [])]

    # --- the launch --------------------------------------------------------------------------
    def launch(self) -> dict[str, list[str]]:
        inputs, plan = self.plan.inputs, self.plan
        lines = [f"out_dtype = {inputs[0]}.dtype",
                 "if out_dtype == torch.bfloat16 and interpreted:",
                 "    # Triton's interpreter has no bfloat16 dot products; bf16 values are exact in float32",
                 f"    {', '.join(inputs)} = {', '.join(f'{n}.float()' for n in inputs)}",
                 f"q, k, v = {plan.terms[0].scores.q}, {plan.terms[0].scores.k}, {plan.v}"]
        lines += [f"{t.name}_ = {t.name}.to(torch.uint8) if {t.name}.dtype == torch.bool else {t.name}"
                  for t in self.tensors]
        lines.append(f"gate_dim = {plan.gates[0][0]}.shape[2]" if plan.gates else
                     "gate_dim = 16  # no gates: GATE_DIM and BLOCK_C are unused")
        args = [" ".join(f"{n}, *{n}.stride()," + (f" H // {n}.shape[1]," if n in self.key_side() else "")
                         for n in inputs)]
        args += [f"{t.name}_, *{t.name}_.stride(), *{t.name}_.shape," for t in self.tensors]
        select = ["selected"] if plan.selection else []
        if plan.selection:
            args.append("selected, selected.shape[1], selected.shape[3], max(2, triton.next_power_of_2(selected.shape[3])),")
        return {"launch_params": [", ".join(inputs + [t.name for t in self.tensors] + select) + ","],
                "launch_inputs": lines, "launch_args": args}

    # --- the backward kernels (FlashAttention-2) ------------------------------------------------
    def captured(self) -> list[str]:
        """The captured tensors whose float values the score reads: they get gradients."""
        t = self.plan.terms[0]
        loads = float_loads(t.logits) + (float_loads(t.sink) if t.sink is not None else [])
        return list(dict.fromkeys(n.arg.name for n in loads)) if self.backward else []

    def backward_holes(self) -> dict[str, list[str]]:
        names = ("grad_params", "bwd_prologue", "bwd_q_idx", "bwd_rows", "bwd_sink", "bwd_kv", "bwd_mask",
                 "bwd_scores", "bwd_captured", "launch_grads", "grad_args", "grad_returns")
        if not self.backward:
            return {n: [] for n in names}
        t = self.plan.terms[0]
        q = t.scores.q
        rows = [f"q = tl.load({q} + b64 * stride_{q}_b + h64 * stride_{q}_h"
                f" + m64[:, None] * stride_{q}_m + offs_d[None, :] * stride_{q}_d,",
                "            mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)",
                "do = tl.load(DO + (off_bh.to(tl.int64) * q_len + m64[:, None]) * HEAD_DIM_V + offs_e[None, :],",
                "             mask=row_ok[:, None] & (offs_e[None, :] < HEAD_DIM_V), other=0.0)",
                "m_i = tl.load(Rows + (off_bh.to(tl.int64) * q_len + offs_m) * 2, mask=row_ok, other=0.0)",
                "l_i = tl.load(Rows + (off_bh.to(tl.int64) * q_len + offs_m) * 2 + 1, mask=row_ok, other=1.0)",
                "m_i = tl.where(m_i == float(\"-inf\"), 0.0, m_i)  # a row with no key: its p is 0 anyway",
                "l_i = tl.where(l_i == 0.0, 1.0, l_i)",
                "delta = tl.load(Delta + off_bh.to(tl.int64) * q_len + offs_m, mask=row_ok, other=0.0)",
                *self.chosen()]
        slope = derivative(t.logits, QK)
        dqk = "ds" if slope == ONE else "tl.zeros_like(ds)  # the score mod ignores the score" if slope is None \
            else f"ds * ({self.expr(slope, qk='qk')})"
        scaled = "qk * qk_scale" if self.plain_scale(t) else f"({self.expr(t.logits, qk='qk')}) * LOG2E"
        scores = ["qk = tl.dot(q, k, input_precision=DOT_PRECISION)",
                  f"s = tl.where(keep, {scaled}, float(\"-inf\"))  # base-2 logits, as the forward's",
                  "p = tl.exp2(s - m_i[:, None]) / l_i[:, None]",
                  "dp = tl.dot(do, tl.trans(v).to(tl.float32), input_precision=DOT_PRECISION)",
                  "ds = p * (dp - delta[:, None])  # d loss / d logits",
                  f"dqk = {dqk}  # d loss / d q.k"]
        captured = []
        for load in float_loads(t.logits):
            d = derivative(t.logits, load)
            if d is not None:
                grad = f"{load.arg.name}_grad"
                value = ("ds" if d == ONE else f"ds * ({self.expr(d, qk='qk')})") + ".to(tl.float64)"
                captured.append(self.printer.scatter_add(load, grad, value, "keep"))
        sink = []
        if t.sink is not None:  # d loss / d sink = -p_sink * delta, one lane per row (column 0)
            sink = [f"sink = {self.sink(t)}",
                    "dsink = -tl.exp2(sink - m_i) / l_i * delta",
                    "sink_lane = row_ok[:, None] & (offs_n[None, :] == 0)"]
            for load in float_loads(t.sink):
                d = derivative(t.sink, load)
                if d is not None:
                    value = "dsink[:, None]" + ("" if d == ONE else f" * ({self.expr(d)})")
                    sink.append(self.printer.scatter_add(
                        load, f"{load.arg.name}_grad",
                        f"(tl.zeros([BLOCK_M, BLOCK_N], tl.float64) + ({value}).to(tl.float64))", "sink_lane"))
        mask = self.mask(first=False)
        kv = self.load_k(0) + self.load_v()
        reads, _ = self.scope()
        names_ = self.captured()
        strides = lambda n: ", ".join(f"{n}_grad_s{i}" for i in range(len(self.program.tensors[n].dims)))  # noqa: E731
        return {
            "grad_params": [f"{n}_grad, {strides(n)}," for n in names_],
            "bwd_prologue": [f"{n} += (off_h // GROUPS_{n}).to(tl.int64) * stride_{n}_h" for n in self.key_side()]
            + (["qk_scale = sm_scale * LOG2E"] if self.plain_scale(t) else []),
            "bwd_q_idx": ["q_idx = offs_m[:, None]"] if "q_idx" in reads else [],
            "bwd_rows": rows, "bwd_sink": sink, "bwd_kv": kv, "bwd_mask": mask, "bwd_scores": scores, "bwd_captured": captured,
            # float64: a table entry sums a term from every pair that reads it, in any order
            "launch_grads": [f"{n}_grad = torch.zeros({n}.shape, dtype=torch.float64, device=q.device)"
                             for n in names_],
            "grad_args": [f"{n}_grad, *{n}_grad.stride()," for n in names_],
            "grad_returns": ["return (*grads, {" + ", ".join(f"{n!r}: {n}_grad.to({n}.dtype)" for n in names_)
                             + "}, stats)"],
        }

    def holes(self) -> dict[str, list[str]]:
        # the loop's pieces first, then the kernel's: each function gets only the names its code reads
        mask, scores = self.mask(), self.scores()
        loop_reads, loop_tensors = self.scope()
        if any(map(self.plain_scale, self.plan.terms)):
            loop_reads.add("qk_scale")
        init, epilogue = self.init(), self.epilogue()
        kernel_reads, _ = self.scope()
        states = self.states()  # reads sm_scale at most (a key map reads no index: ir.lowering)
        self.scope()
        backward = self.backward_holes()
        return {"state": self.state(), "reads": self.reads_hole(loop_reads, loop_tensors), "mask": mask,
                "scores": scores, "params": self.params(), "prologue": self.prologue(loop_reads | kernel_reads),
                "init": init, "runs": self.runs(), "epilogue": epilogue, **states,
                "launch_states": self.launch_states(), **self.launch(), **backward}

def generate_source(program: Program, plan: KernelPlan) -> str:
    """The standalone module: template.py with the variant's docstring, constants, helpers,
    kernel pieces and launch arguments in its holes."""
    clash = (set(plan.inputs) | set(program.tensors)) & RESERVED
    if clash:
        from ...errors import UnsupportedError
        raise UnsupportedError(f"{program.name}: tensor names {sorted(clash)} clash with the kernel's own names")
    gen = _Gen(program, plan)
    holes = gen.holes()
    params = {k: v for k, v in program.params.items() if k != "scale" and v is not None}
    kinds = ", ".join(t.kind for t in plan.terms)
    docstring = [
        f'"""Triton attention kernel for the variant `{program.name}`, generated by attncomp.',
        "",
        "The Program it implements:",
        "",
        *["    " + line for line in str(program).strip().splitlines()],
        "",
        f"Key loop terms: {kinds}. Notation: m = q_idx (query index), n = kv_idx (key index), b = batch,",
        "h = head; `//` and `%` mean Python's floor division and modulo; a program handles one",
        "BLOCK_M query tile of one (batch, head) and visits only the key blocks the analysis listed:",
        "partial ones (mask applied) and full ones (no mask), by one loop function called for each",
        "list (IS_FULL). Exponentials are base 2: scores are multiplied by log2(e) so that",
        "exp(x) = exp2(x * log2(e)), as in FlashAttention.",
        "",
        "Needs torch and triton only. On a machine without a GPU, set TRITON_INTERPRET=1 before",
        "importing this module to run it with Triton's interpreter.",
        '"""',
    ]
    constants = [f"SCALE = {program.params.get('scale')!r}  # None: 1 / sqrt(head_dim)"]
    constants += [f"{k.upper()} = tl.constexpr({v!r})" for k, v in params.items()]
    constants += [f"N_LINEAR = tl.constexpr({len(gen.linear)})  # linear terms, run chunked with prefix states",
                  f"VISIT_FULL = tl.constexpr({len(gen.linear) < len(plan.terms)})  # whether a term walks full tiles"]
    helpers = [line for h in sorted(gen.printer.helpers) for line in (HELPERS[h].strip(), "", "")]
    return fill(template(), {"docstring": docstring, "constants": constants, "helpers": helpers, **holes},
                {"linear": bool(gen.linear), "backward": gen.backward})


def differentiable(plan: KernelPlan) -> bool:
    """Whether the backward kernels apply: one softmax term of a raw ``q . k`` (a score mod
    and a mask allowed, no feature maps, gates or epilogue beyond the normalization).
    Cascades (sigmoid, differential, gated, linear) get theirs from the adjoint Program."""
    if len(plan.terms) != 1 or plan.gates:
        return False
    t = plan.terms[0]
    if not (t.kind == "softmax" and t.scores.phi_q is None and t.scores.phi_k is None and not t.rowsum
            and plan.output == E.var("acc0")):
        return False
    try:  # a score mod with an op that has no derivative (a float //) gets no backward
        for leaf in [QK, *float_loads(t.logits)]:
            derivative(t.logits, leaf)
        for leaf in float_loads(t.sink) if t.sink is not None else []:
            derivative(t.sink, leaf)
    except NoDerivative:
        return False
    return True
