"""The main job: analysis, simulated speedups, kernels and a numerics check, in one report.

    import attncomp as ac
    from attncomp.report import report
    print(report(ac.variants.sliding_window(1024), q_len=32768).summary())

``report`` analyzes the mask exactly at the report size, simulates it on each GPU model,
generates the Triton and FlexAttention kernels, runs both against the float64 reference
on a small problem on this machine, and can write ``report.html`` (tile picture, predicted
time breakdown per GPU, speedups and bounds, kernel sources).
"""

from __future__ import annotations

import base64
import html
import io
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import torch

from .errors import AttncompError
from .ir import expr as E
from .ir.analysis import BlockLayout, analyze
from .ir.plan import Plan, plan_of
from .ir.program import Program

PARTS = ("matmul", "exp", "memory", "mask", "overhead", "imbalance")
COLOURS = {"matmul": "#2b5cc8", "exp": "#e59a1f", "memory": "#7a7a7a", "mask": "#c8402b", "overhead": "#9c6ade",
           "imbalance": "#bbbbbb"}


class Progress:
    """Names a step; when it runs past a second, a live elapsed-time bar on a terminal (a
    plain line elsewhere) says what is taking the time."""

    def __init__(self, total: int, stream=None, quiet: bool = False):
        self.total, self.done, self.stream, self.quiet = total, 0, stream or sys.stderr, quiet

    def step(self, label: str):
        progress = self

        class _Step:
            def __enter__(self):
                progress.done += 1
                self.start = time.perf_counter()
                self.stop = threading.Event()
                self.thread = threading.Thread(target=self.tick, daemon=True)
                if not progress.quiet:
                    self.thread.start()
                return self

            def tick(self):
                tty = progress.stream.isatty()
                while not self.stop.wait(0.2):
                    elapsed = time.perf_counter() - self.start
                    if elapsed < 1.0:
                        continue
                    bar = "#" * min(30, int(elapsed * 2))
                    if tty:
                        progress.stream.write(f"\r[{progress.done}/{progress.total}] {label:<34} {bar:<30} {elapsed:5.1f}s")
                        progress.stream.flush()
                    else:
                        progress.stream.write(f"[{progress.done}/{progress.total}] {label} ...\n")
                        progress.stream.flush()
                        self.stop.wait()
                        return

            def __exit__(self, *exc):
                self.stop.set()
                if not progress.quiet:
                    self.thread.join()
                    elapsed = time.perf_counter() - self.start
                    end = "\r" if progress.stream.isatty() else ""
                    progress.stream.write(f"{end}[{progress.done}/{progress.total}] {label:<34} done in {elapsed:.1f}s"
                                          f"{' ' * 24}\n")
                    progress.stream.flush()
                return False
        return _Step()


@dataclass
class Check:
    backend: str
    ok: bool
    detail: str
    source: str | None = None


# what the layout's classes are: exact, or (a data-dependent selection) every choice's superset
KINDS = {None: "exact", "structural": "structural: exact where the data cannot matter, partial where it decides",
         "data": "exact for the given inputs"}


@dataclass
class Report:
    program: Program
    layout: BlockLayout
    estimates: list
    checks: list[Check]
    sizes: dict
    timings: dict = field(default_factory=dict)

    def summary(self) -> str:
        c, lay = self.layout.counts, self.layout
        s = self.sizes
        lines = [f"attncomp report: {self.program.name}  (batch {s['batch']}, heads {s['heads']}, q_len {s['q_len']}, "
                 f"kv_len {s['kv_len']}, head_dim {s['head_dim']}, {s['dtype']})", "",
                 f"analysis ({1000 * lay.analysis_time_s:.1f} ms, {KINDS[lay.selection]}): {c['partial']} partial + "
                 f"{c['full']} full "
                 f"tiles visited, {c['empty']} empty skipped, block {lay.block[0]}x{lay.block[1]}",
                 f"  visited tile area {100 * lay.density:.2f}%, mask keeps {lay.mask_density_text(percent=True)} of pairs: "
                 f"ratios {lay.tile_bound:.2f}x (all tiles / visited), {1 / max(lay.mask_density, 1e-300):.2f}x "
                 f"(all pairs / kept)", ""]
        lines.append("predicted on GPU models (speedup over the spec's dense form of the same shape, and over plain "
                     "dense attention with the GPU's best kernel):")
        for e in self.estimates:
            parts = ", ".join(f"{p} {100 * e.breakdown[p] / e.time_s:.0f}%" for p in PARTS
                              if e.breakdown[p] / e.time_s >= 0.005)
            lines.append(f"  {e.hardware:<10} {e.family:<5} {1e3 * e.time_s:9.3f} ms  {e.tflops:6.0f} TFLOP/s useful  "
                         f"speedup {e.speedup:5.2f}x, {e.speedup_vs_baseline:5.2f}x vs {e.baseline}  ({parts})"
                         + ("" if e.mask_density_exact else
                            f"  [useful TFLOP/s {e.tflops_range[0]:.0f}-{e.tflops_range[1]:.0f}: mask density estimated]"))
        lines += ["", "numerics on this machine (small problem, float64 reference):"]
        lines += [f"  {c.backend:<9} {'PASS' if c.ok else 'FAIL' if c.source else 'n/a '}  {c.detail}" for c in self.checks]
        return "\n".join(lines)

    # --- HTML --------------------------------------------------------------------------------
    def html(self) -> str:
        png = io.BytesIO()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "layout.png")
            self.layout.save_png(path, max_pixels=256)
            png.write(open(path, "rb").read())
        picture = base64.b64encode(png.getvalue()).decode()
        esc = html.escape
        rows = "".join(
            f"<tr><td>{esc(e.hardware)}</td><td>{esc(e.family)}</td><td>{1e3 * e.time_s:.3f} ms</td>"
            f"<td>{e.tflops:.0f}</td><td>{e.executed_tflops:.0f}</td><td>{e.speedup:.2f}x</td>"
            f"<td>{e.speedup_vs_baseline:.2f}x ({esc(e.baseline)})</td>"
            f"<td>{e.bound:.2f}x</td><td>{e.flop_bound:.2f}x</td></tr>" for e in self.estimates)
        checks = "".join(f"<tr><td>{esc(c.backend)}</td><td class='{'ok' if c.ok else 'bad'}'>"
                         f"{'PASS' if c.ok else ('FAIL' if c.source else 'n/a')}</td><td>{esc(c.detail)}</td></tr>"
                         for c in self.checks)
        sources = "".join(f"<h3>{esc(c.backend)} kernel</h3><pre>{esc(c.source)}</pre>" for c in self.checks if c.source)
        c = self.layout.counts
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>attncomp report: {esc(self.program.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}}.ok{{color:#197a1f}}.bad{{color:#b00}}
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}}</style></head><body>
<h1>attncomp report: {esc(self.program.name)}</h1>
<p>{esc(', '.join(f'{k} {v}' for k, v in self.sizes.items()))}</p>
<h2>Program</h2><pre>{esc(str(self.program))}</pre>
<h2>Block layout</h2>
<p>{c['partial']} partial and {c['full']} full tiles visited, {c['empty']} empty tiles skipped
(block {self.layout.block[0]}x{self.layout.block[1]}); visited area {100 * self.layout.density:.2f}%,
mask density {esc(self.layout.mask_density_text(percent=True))}. Exact analysis in {1000 * self.layout.analysis_time_s:.1f} ms.</p>
<img id="layout" alt="tile picture: blue full, amber partial, white empty" src="data:image/png;base64,{picture}">
<h2>Predicted time on GPU models</h2>
<table id="estimates"><tr><th>hardware</th><th>kernel family</th><th>time</th><th>useful TFLOP/s</th>
<th>executed TFLOP/s</th><th>speedup vs dense</th><th>speedup vs baseline</th><th>bound: same tiles, ideal</th><th>bound: kept pairs only</th></tr>{rows}</table>
{self._chart()}
<h2>Numerics on this machine</h2><table id="checks">{checks}</table>
<h2>Generated kernels</h2>{sources}
</body></html>
"""

    def _chart(self) -> str:
        """Stacked horizontal bars of each GPU's predicted time breakdown, as inline SVG."""
        width, bar, left = 720, 26, 110
        longest = max(e.time_s for e in self.estimates)
        height = 30 + len(self.estimates) * (bar + 12)
        out = [f'<svg id="breakdown" width="{width + left + 90}" height="{height}" role="img" '
               'aria-label="predicted time breakdown per GPU">']
        for i, e in enumerate(self.estimates):
            y, x = 10 + i * (bar + 12), float(left)
            out.append(f'<text x="0" y="{y + bar * 0.7}" font-size="13">{html.escape(e.hardware)}</text>')
            for p in PARTS:
                w = width * e.breakdown[p] / longest
                if w > 0:
                    out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}" fill="{COLOURS[p]}">'
                               f'<title>{p}: {1e3 * e.breakdown[p]:.3f} ms</title></rect>')
                    x += w
            out.append(f'<text x="{x + 6:.1f}" y="{y + bar * 0.7}" font-size="12">{1e3 * e.time_s:.3f} ms</text>')
        out.append("</svg>")
        legend = "".join(f'<span style="background:{COLOURS[p]}"></span>{p}' for p in PARTS)
        return "\n".join(out) + f'<p class="legend">{legend}</p>'

    def write(self, directory: str) -> str:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "report.html")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.html())
        return path


def _reason(err: AttncompError) -> str:
    """Why a backend failed, in one line of the report (the variant is the report's title)."""
    return f"{err.text}. {err.hint}" if err.hint else err.text


def _check(planned: Plan, backend: str, check_size: int, tensors_for, options: dict) -> Check:
    """Run ``backend`` on a small problem against the float64 reference (error-ratio oracle:
    the backend's float32 error at most twice the reference's own float32 error + 1e-5)."""
    from .backends import compile as compile_spec
    from .variants.registry import Example, example_inputs

    program = planned.spec
    try:
        kernel = compile_spec(planned, backend=backend, **options)
    except AttncompError as err:
        return Check(backend, False, _reason(err))
    ex = Example(batch=2, heads=2, kv_heads=2, q_len=check_size, kv_len=check_size, head_dim=32)
    tensors = tensors_for(check_size)
    inputs = example_inputs(program, ex, dtype=torch.float64, seed=11)
    golden = compile_spec(planned)(**inputs, **tensors)
    low = {k: v.float() for k, v in inputs.items()}
    eager = compile_spec(planned)(**low, **tensors)
    try:
        out = kernel(**low, **tensors)
    except AttncompError as err:
        return Check(backend, False, _reason(err), kernel.source)
    err, base = (out.double() - golden).abs().max().item(), (eager.double() - golden).abs().max().item()
    ok = err <= 2 * base + 1e-5 and not torch.isnan(out).any()
    grad_ok, grad_detail = _check_gradients(planned, kernel, inputs, tensors)
    return Check(backend, ok and grad_ok, f"max error {err:.2e} vs float32 eager {base:.2e} at {check_size} tokens; "
                 + grad_detail, kernel.source)


def _gradients(fn, inputs: dict, tensors: dict, dtype) -> list:
    """Gradients of ``<fn(...), g>`` (g seeded) for every input and float runtime tensor."""
    xs = {k: v.detach().to(dtype).requires_grad_() for k, v in inputs.items()}
    ts = {k: v.detach().clone().requires_grad_() if v.is_floating_point() else v for k, v in tensors.items()}
    out = fn(**xs, **ts)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(out.dtype)
    wrt = list(xs.values()) + [t for t in ts.values() if t.requires_grad]
    return [torch.zeros_like(t) if d is None else d
            for t, d in zip(wrt, torch.autograd.grad(out, wrt, g, allow_unused=True))]


def _check_gradients(planned: Plan, kernel, inputs: dict, tensors: dict) -> tuple[bool, str]:
    """The backward half of the check: the kernel's float32 gradients within twice the float32
    reference's error of the float64 reference's, or why this backend computes none here."""
    from .backends import compile as compile_spec

    reference = compile_spec(planned)
    try:
        got = _gradients(kernel, inputs, tensors, torch.float32)
    except AttncompError as err:
        return True, f"gradients n/a: {err.text}"
    golden = _gradients(reference, inputs, tensors, torch.float64)
    base = _gradients(reference, inputs, tensors, torch.float32)
    errs = [((a.double() - g).abs().max().item(), (b.double() - g).abs().max().item(), g.abs().max().item())
            for a, b, g in zip(got, base, golden)]
    ok = all(e <= 2 * b + 1e-5 * (1 + m) for e, b, m in errs) and all(torch.isfinite(a).all() for a in got)
    worst = max(errs, key=lambda x: x[0] - 2 * x[1])
    return ok, f"gradients max error {worst[0]:.2e} vs float32 eager {worst[1]:.2e}"


CHECK_LENGTHS = (128, 256, 512, 1024, 2048, 4096)  # numerics-check sizes tried, smallest first
CHECK_BLOCK = (32, 32)


def _classes(layout) -> set[str]:
    """The tile classes present, and ``"empty rows"`` when some query block visits nothing
    (fully masked rows, which must come out as zeros)."""
    present = {kind for kind, n in layout.counts.items() if n}
    partial, full = layout.row_blocks()
    return present | ({"empty rows"} if ((partial + full) == 0).any() else set())


def _reach(planned: Plan) -> int:
    """The largest integer constant the mask compares indices with (a window, a group or
    chunk size): structure starts only beyond it."""
    mask = planned.program.mask
    values = [abs(n.arg) for n in E.walk(mask) if n.op == "const" and n.dtype == E.INT] if mask is not None else []
    return max(values, default=0)


def choose_check_size(planned: Plan, layout, q_len: int, kv_len: int, tensors_for) -> int:
    """The smallest length (up to 4,096) at which the numerics check sees everything the
    report's layout has: each tile class (empty, partial, full), query blocks with no key at
    all, and a length past every constant the mask compares indices with. A window of 1,024
    keys or a 2,112-token group is invisible at 256 tokens, where the variant would be
    checked as plain causal attention."""
    wanted = _classes(layout)
    longest = max(q_len, kv_len)
    sizes = [n for n in CHECK_LENGTHS if n < longest] + [min(longest, CHECK_LENGTHS[-1])]
    reach = _reach(planned)
    for n in sizes:
        if n <= reach + CHECK_BLOCK[0] and n != sizes[-1]:
            continue
        small = analyze(planned, n, n, CHECK_BLOCK, tensors=tensors_for(n), batch=2, heads=2)
        if wanted <= _classes(small):
            return n
    return sizes[-1]


def report(program: Program, q_len: int = 32768, kv_len: int | None = None, batch: int = 1, heads: int = 16,
           head_dim: int = 128, dtype: str = "bf16", hardware=("h100", "b200"), tensors: dict | None = None,
           tensors_for=None, check_size: int | None = None, progress: bool = False) -> Report:
    """Analyze, simulate, compile and check ``program``; see the module docstring.

    ``tensors`` are runtime tensors at the report size; ``tensors_for(length)`` makes them
    for the small numerics check (default: ``tensors`` if their size fits, else captured).
    ``check_size`` is the check's length; by default the smallest that shows every tile
    class of the report's layout (:func:`choose_check_size`).
    """
    from .backends.registry import generated
    from .simulator import simulate

    kv_len = kv_len or q_len
    backends = generated()
    steps = Progress(2 + len(backends), quiet=not progress)
    tensors = tensors or {}
    tensors_for = tensors_for or (lambda length: tensors)
    planned = plan_of(program)
    with steps.step("exact block-sparsity analysis"):
        layout = analyze(planned, q_len, kv_len, (128, 128), tensors=tensors, batch=batch, heads=heads)
        layout.mask_density  # noqa: B018 (counted here, inside the step)
    with steps.step("simulating on " + ", ".join(hardware)):
        estimates = []
        for hw in hardware:  # the layout is reused where the GPU's kernel family tiles 128 x 128
            reuse = layout if _default_block(hw, head_dim) == layout.block else None
            estimates.append(simulate(planned, hw, batch=batch, heads=heads, q_len=q_len, kv_len=kv_len,
                                      head_dim=head_dim, dtype=dtype, tensors=tensors, layout=reuse))
    if check_size is None:
        check_size = choose_check_size(planned, layout, q_len, kv_len, tensors_for)
    checks = []
    for backend in backends:
        with steps.step(f"{backend.title} kernel vs reference"):
            checks.append(_check(planned, backend.name, check_size, tensors_for, backend.check_options))
    sizes = {"batch": batch, "heads": heads, "q_len": q_len, "kv_len": kv_len, "head_dim": head_dim, "dtype": dtype}
    return Report(program, layout, estimates, checks, sizes)


def _default_block(hw: str, head_dim: int) -> tuple[int, int]:
    from .simulator.hardware import gpu
    from .simulator.model import FAMILIES, default_family

    return FAMILIES[default_family(gpu(hw))].block(head_dim)
