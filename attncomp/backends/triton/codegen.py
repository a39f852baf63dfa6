"""Generating the Triton module (kernel + launch wrapper) from a Plan.

One flash-attention skeleton (names from Triton's fused-attention tutorial: ``offs_m``,
``offs_n``, ``m_i``, ``l_i``, ``acc``; exponentials in base 2 with the log2(e) scale):
a program owns one query tile of one (batch, head); it walks its row's partial key blocks
with the mask applied, then its full key blocks without it. Block lists are the
BlockLayout's compressed rows, so empty blocks are never visited.
"""

from __future__ import annotations

from ...ir import expr as E
from ...ir.program import Program
from .plan import QK, Plan, X
from .syntax import HELPERS, TritonPrinter

RESERVED = {"Out", "Lse", "Stats", "H", "GROUPS", "P_OFF", "P_IDX", "F_OFF", "F_IDX", "tl", "triton", "torch"}


class _Gen:
    def __init__(self, program: Program, plan: Plan):
        self.program, self.plan = program, plan
        self.single = len(plan.terms) == 1
        self.names = {"m": "q_idx", "n": "kv_idx", "b": "off_b", "h": "off_h"}
        for i in range(len(plan.terms)):
            self.names[f"acc{i}"] = self.n("acc", i)
            self.names[f"rowsum{i}"] = f"{self.n('rowsum', i)}[:, None]"
        for j in range(len(plan.gates)):
            self.names[f"gate{j}"] = f"gate{j}"
        self.printer = TritonPrinter(self.names)
        self.tensors = list(program.tensors.values())
        self.letters_read: set[str] = set()

    def n(self, base: str, i: int) -> str:
        return base if self.single else f"{base}{i}"

    def expr(self, e: E.Expr, **extra: str) -> str:
        self.letters_read |= E.letters_of(e)  # the prologue defines q_idx only if "m" is read
        saved = dict(self.printer.names)
        self.printer.names.update(extra)
        try:
            return self.printer(e)
        finally:
            self.printer.names = saved

    def letters(self, name: str) -> tuple[str, ...]:
        return self.program.input(name).letters

    # --- signature ---------------------------------------------------------------------------
    def params(self) -> list[list[str]]:
        """Kernel parameters, one related group per line."""
        groups = [list(self.plan.inputs) + ["Out", "Lse", "Stats"]]
        for name in self.plan.inputs:
            groups.append([f"stride_{name}_{x}" for x in self.letters(name)])
        groups.append([f"stride_Out_{x}" for x in "bhme"])
        groups.append(["P_OFF", "P_IDX", "F_OFF", "F_IDX"])
        for t in self.tensors:
            groups.append([f"{t.name}_ptr"] + [f"{t.name}_s{i}" for i in range(len(t.dims))] +
                          [f"{t.name}_n{i}" for i in range(len(t.dims))])
        groups.append(["q_len", "kv_len", "H", "GROUPS", "LAYOUT_B", "LAYOUT_H", "NUM_Q_BLOCKS", "sm_scale"])
        constexpr = lambda names: [f"{c}: tl.constexpr" for c in names]
        groups.append(constexpr(("HEAD_DIM", "HEAD_DIM_V", "GATE_DIM", "BLOCK_M", "BLOCK_N")))
        groups.append(constexpr(("BLOCK_D", "BLOCK_DV", "BLOCK_C", "STORE_LSE", "COUNT", "DOT_PRECISION")))
        return groups

    # --- pieces ------------------------------------------------------------------------------
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

    def load_k(self, i: int) -> list[str]:
        t = self.plan.terms[i]
        name, k = t.scores.k, self.n("k", i)
        lines = [f"{k} = tl.load({name} + b64 * stride_{name}_b + hk64 * stride_{name}_h"
                 f" + n64[None, :] * stride_{name}_n + offs_d[:, None] * stride_{name}_d,",
                 "            mask=col_ok & (offs_d[:, None] < HEAD_DIM), other=0.0)"]
        if t.scores.phi_k is not None or t.kind == "linear":
            phi = self.expr(t.scores.phi_k or X, x=f"{k}.to(tl.float32)")
            lines.append(f"{k} = tl.where(col_ok & (offs_d[:, None] < HEAD_DIM), {phi}, 0.0)  # phi(k)")
        return lines

    def init(self) -> list[str]:
        lines = []
        for i, t in enumerate(self.plan.terms):
            lines += self.load_q(i)
            if t.kind == "softmax":
                lines += [f"{self.n('m_i', i)} = tl.full([BLOCK_M], float(\"-inf\"), tl.float32)",
                          f"{self.n('l_i', i)} = tl.zeros([BLOCK_M], tl.float32)"]
            lines.append(f"{self.n('acc', i)} = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)")
            if t.rowsum:
                lines.append(f"{self.n('rowsum', i)} = tl.zeros([BLOCK_M], tl.float32)")
            if t.kind == "linear":
                lines.append(f"{self.n('state', i)} = tl.zeros([BLOCK_D, BLOCK_DV], tl.float32)  # sum phi(k)^T v")
                if t.rowsum:
                    lines.append(f"{self.n('z', i)} = tl.zeros([BLOCK_D], tl.float32)  # sum phi(k)")
        return lines

    @staticmethod
    def plain_scale(t) -> bool:
        """Softmax logits that are just q.k * scale: one multiply by a folded scale * log2(e)."""
        return t.kind == "softmax" and t.logits == E.binary("mul", QK, E.param("scale", None))

    def body(self, masked: bool) -> list[str]:
        lists = "P" if masked else "F"
        lines = [f"start_n = tl.load({lists}_IDX + idx) * BLOCK_N",
                 "kv_idx = (start_n + offs_n)[None, :]",
                 "n64 = (start_n + offs_n).to(tl.int64)",
                 "col_ok = kv_idx < kv_len"]
        if masked and self.plan.mask is not None:
            lines.append(f"keep = col_ok & ({self.expr(self.plan.mask)})  # the mask: partial tiles only")
            lines.append("if COUNT:\n    n_mask += 1")
        else:
            lines.append("keep = col_ok")
        v = self.plan.v
        lines += [f"v = tl.load({v} + b64 * stride_{v}_b + hk64 * stride_{v}_h"
                  f" + n64[:, None] * stride_{v}_n + offs_e[None, :] * stride_{v}_e,",
                  "            mask=((start_n + offs_n)[:, None] < kv_len) & (offs_e[None, :] < HEAD_DIM_V), other=0.0)"]
        for i, t in enumerate(self.plan.terms):
            lines += self.load_k(i)
            q, k, acc = self.n("q", i), self.n("k", i), self.n("acc", i)
            if t.kind == "linear" and not masked:  # full tile: fold into the carried state
                lines.append(f"{self.n('state', i)} += tl.dot({k}, v.to(tl.float32), input_precision=DOT_PRECISION)")
                if t.rowsum:
                    lines.append(f"{self.n('z', i)} += tl.sum({k}, 1)")
                continue
            lines.append(f"{self.n('qk', i)} = tl.dot({q}, {k}, input_precision=DOT_PRECISION)")
            logits = self.expr(t.logits, qk=self.n("qk", i))
            if t.kind == "softmax":
                m_i, l_i = self.n("m_i", i), self.n("l_i", i)
                scaled = f"{self.n('qk', i)} * qk_scale" if self.plain_scale(t) else f"({logits}) * LOG2E"
                lines += [f"s = tl.where(keep, {scaled}, float(\"-inf\"))  # base-2 logits",
                          f"m_new = tl.maximum({m_i}, tl.max(s, 1))",
                          "m_safe = tl.where(m_new == float(\"-inf\"), 0.0, m_new)  # rows with nothing yet",
                          "p = tl.exp2(s - m_safe[:, None])",
                          f"alpha = tl.exp2({m_i} - m_safe)",
                          f"{l_i} = {l_i} * alpha + tl.sum(p, 1)",
                          f"{acc} = {acc} * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)",
                          f"{m_i} = m_new"]
            else:
                lines += [f"w = tl.where(keep, {logits}, 0.0)  # weights, no normalizer",
                          f"{acc} += tl.dot(w.to(tl.float32), v.to(tl.float32), input_precision=DOT_PRECISION)"]
                if t.rowsum:
                    lines.append(f"{self.n('rowsum', i)} += tl.sum(w, 1)")
        lines.append(f"if COUNT:\n    n_{'partial' if masked else 'full'} += 1")
        return lines

    def epilogue(self) -> list[str]:
        lines = []
        for i, t in enumerate(self.plan.terms):
            acc = self.n("acc", i)
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
        lines.append(f"out = {self.expr(self.plan.output)}")
        lines += ["tl.store(Out + b64 * stride_Out_b + h64 * stride_Out_h + m64[:, None] * stride_Out_m"
                  " + offs_e[None, :] * stride_Out_e,",
                  "         out.to(Out.dtype.element_ty), mask=row_ok[:, None] & (offs_e[None, :] < HEAD_DIM_V))"]
        if self.single and self.plan.terms[0].kind == "softmax":
            lines += ["if STORE_LSE:  # natural-log logsumexp of the scores, -inf for empty rows",
                      "    tl.store(Lse + off_bh.to(tl.int64) * q_len + offs_m, (m_i + tl.log2(l_i)) / LOG2E, mask=row_ok)"]
        lines += ["if COUNT:  # tiles touched and mask evaluations, per program",
                  "    pid = off_bh * NUM_Q_BLOCKS + start_m",
                  "    tl.store(Stats + pid * 3 + 0, n_partial)",
                  "    tl.store(Stats + pid * 3 + 1, n_full)",
                  "    tl.store(Stats + pid * 3 + 2, n_mask)"]
        return lines

    def kernel(self) -> list[str]:
        ind = lambda lines, k: [(" " * k + line).replace("\n", "\n" + " " * k) for line in lines]
        # the pieces first: the prologue defines only what they read
        init, partial, full, epilogue = self.init(), self.body(True), self.body(False), self.epilogue()
        out = ["@triton.jit", "def attncomp_fwd("]
        out += ["    " + ", ".join(group) + "," for group in self.params()]
        out += ["):",
                "    start_m = tl.program_id(0)  # this program's query tile",
                "    off_bh = tl.program_id(1)",
                "    off_b = off_bh // H",
                "    off_h = off_bh % H",
                "    off_hk = off_h // GROUPS  # grouped-query attention: the K/V head",
                "    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)",
                "    # element offsets in 64 bits: b * stride_b + m * stride_m passes 2**31 at 1M tokens",
                "    b64, h64, hk64, m64 = off_b.to(tl.int64), off_h.to(tl.int64), off_hk.to(tl.int64), offs_m.to(tl.int64)",
                "    offs_n = tl.arange(0, BLOCK_N)",
                "    offs_d = tl.arange(0, BLOCK_D)",
                "    offs_e = tl.arange(0, BLOCK_DV)",
                *(["    offs_c = tl.arange(0, BLOCK_C)"] if self.plan.gates else []),
                *(["    q_idx = offs_m[:, None]"] if "m" in self.letters_read else []),
                "    row_ok = offs_m < q_len",
                *(["    qk_scale = sm_scale * LOG2E"] if any(map(self.plain_scale, self.plan.terms)) else []),
                "    n_partial = 0",
                "    n_full = 0",
                "    n_mask = 0"]
        out += ind(init, 4)
        out += ["    # this row's key blocks, from the analysis (compressed rows; empty blocks are absent)",
                "    row = ((off_b % LAYOUT_B) * LAYOUT_H + off_h % LAYOUT_H) * NUM_Q_BLOCKS + start_m",
                "    # partial blocks: mask and score mod",
                "    for idx in range(tl.load(P_OFF + row), tl.load(P_OFF + row + 1)):"]
        out += ind(partial, 8)
        out += ["    # full blocks: score mod only",
                "    for idx in range(tl.load(F_OFF + row), tl.load(F_OFF + row + 1)):"]
        out += ind(full, 8)
        out += ind(epilogue, 4)
        return out


def generate_source(program: Program, plan: Plan) -> str:
    """The standalone module: header, constants, helpers, kernel and launch wrapper."""
    clash = (set(plan.inputs) | set(program.tensors)) & RESERVED
    if clash:
        from ...errors import UnsupportedError
        raise UnsupportedError(f"{program.name}: tensor names {sorted(clash)} clash with the kernel's own names")
    gen = _Gen(program, plan)
    kernel = gen.kernel()
    params = {k: v for k, v in program.params.items() if k != "scale" and v is not None}
    scale = program.params.get("scale")
    kinds = ", ".join(t.kind for t in plan.terms)
    header = [
        f'"""Triton attention kernel for the variant `{program.name}`, generated by attncomp.',
        "",
        "The Program it implements:",
        "",
        *["    " + line for line in str(program).strip().splitlines()],
        "",
        f"Key loop terms: {kinds}. Notation: m = q_idx (query index), n = kv_idx (key index), b = batch,",
        "h = head; `//` and `%` mean Python's floor division and modulo; a program handles one",
        "BLOCK_M query tile of one (batch, head) and visits only the key blocks the analysis listed:",
        "partial ones (mask applied) and full ones (no mask). Exponentials are base 2: scores are",
        "multiplied by log2(e) so that exp(x) = exp2(x * log2(e)), as in FlashAttention.",
        "",
        "Needs torch and triton only. On a machine without a GPU, set TRITON_INTERPRET=1 before",
        "importing this module to run it with Triton's interpreter.",
        '"""',
        "import math",
        "import os",
        "",
        "import torch",
        "import triton",
        "import triton.language as tl",
        "",
        "LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) == exp2(x * LOG2E)",
        f"SCALE = {scale!r}  # None: 1 / sqrt(head_dim)",
    ]
    header += [f"{k.upper()} = tl.constexpr({v!r})" for k, v in params.items()]
    helpers = [HELPERS[h].strip() for h in sorted(gen.printer.helpers)]
    blocks = ["\n".join(header)] + helpers + ["\n".join(kernel), "\n".join(_wrapper(program, plan))]
    return "\n\n\n".join(blocks) + "\n"


def _wrapper(program: Program, plan: Plan) -> list[str]:
    inputs = plan.inputs
    tensors = list(program.tensors.values())
    args = ", ".join(inputs + [t.name for t in tensors])
    lines = [
        f"def attention({args}, blocks, layout_shape=(1, 1), block_m=64, block_n=64, store_lse=False, count=False):",
        '    """Launch the kernel. `blocks` = (partial offsets, partial indices, full offsets, full indices):',
        "    the analysis's compressed rows as int32 tensors on the inputs' device, for groups of shape",
        "    `layout_shape` (batch, heads; 1 where the mask does not depend on it). Returns (out, lse, stats).",
        '    """',
        f"    out_dtype = {inputs[0]}.dtype",
        "    if out_dtype == torch.bfloat16 and os.environ.get(\"TRITON_INTERPRET\") == \"1\":",
        "        # Triton's interpreter has no bfloat16 dot products; bf16 values are exact in float32",
        f"        {', '.join(inputs)} = ({', '.join(f'{n}.float()' for n in inputs)},)",
        f"    q, k, v = {plan.terms[0].scores.q}, {plan.terms[0].scores.k}, {plan.v}",
        "    B, H, M, D = q.shape",
        "    N, DV = k.shape[2], v.shape[3]",
        "    out = torch.empty((B, H, M, DV), dtype=q.dtype, device=q.device)",
        "    lse = torch.empty((B, H, M), dtype=torch.float32, device=q.device) if store_lse else out",
        "    grid = (triton.cdiv(M, block_m), B * H)",
        "    stats = torch.zeros(grid[0] * grid[1] * 3, dtype=torch.int32, device=q.device) if count else out",
        "    pow2 = lambda x: max(16, triton.next_power_of_2(x))",
    ]
    gate_dim = f"{plan.gates[0][0]}.shape[2]" if plan.gates else "16"
    strides = " + ".join(f"tuple({n}.stride())" for n in inputs) + " + tuple(out.stride())"
    lines.append(f"    strides = {strides}")
    rt = []
    for t in tensors:
        lines.append(f"    {t.name}_ = {t.name}.to(torch.uint8) if {t.name}.dtype == torch.bool else {t.name}")
        rt.append(f"{t.name}_, *{t.name}_.stride(), *{t.name}_.shape")
    rt_args = "".join(f", {r}" for r in rt)
    lines += [
        "    scale = SCALE if SCALE is not None else 1.0 / math.sqrt(D)",
        f"    attncomp_fwd[grid]({', '.join(inputs)}, out, lse, stats, *strides, *blocks{rt_args},",
        "                       M, N, H, H // k.shape[1], layout_shape[0], layout_shape[1], grid[0], scale,",
        f"                       HEAD_DIM=D, HEAD_DIM_V=DV, GATE_DIM={gate_dim}, BLOCK_M=block_m, BLOCK_N=block_n,",
        f"                       BLOCK_D=pow2(D), BLOCK_DV=pow2(DV), BLOCK_C=pow2({gate_dim}), STORE_LSE=store_lse,",
        "                       COUNT=count, DOT_PRECISION=\"ieee\" if q.dtype == torch.float32 else \"tf32\")",
        "    out = out.to(out_dtype)",
        "    return out, (lse if store_lse else None), (stats.view(grid[1], grid[0], 3) if count else None)",
    ]
    return lines
