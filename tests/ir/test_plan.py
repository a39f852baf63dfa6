"""The pipeline: one optimize per spec, plans and layouts cached and reused by every consumer."""

import ast
import pathlib
from dataclasses import replace

import torch

import attncomp as ac
import attncomp.ir.plan as plan_module
from attncomp.ir.plan import LAYOUTS, plan_of

PACKAGE = pathlib.Path(ac.__file__).parent


def test_optimize_has_one_call_site():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "optimize":
                calls.append(str(path.relative_to(PACKAGE)))
    assert calls == ["ir/plan.py"]


def test_each_form_is_optimized_once_for_analysis_simulation_and_both_backends(monkeypatch):
    runs = []
    real = plan_module.optimize
    spec = ac.variants.sliding_window(64)
    monkeypatch.setattr(plan_module, "optimize",
                        lambda p, fold_params: p is spec and runs.append(fold_params) or real(p, fold_params))
    ac.analyze(spec, 512, block=64)
    ac.simulate(spec, "h100", q_len=512, block=(64, 64))
    q = k = v = torch.randn(1, 1, 200, 16)
    flex = ac.compile(spec, backend="flex", compiled=False)
    triton = ac.compile(spec, backend="triton", block=(32, 32))
    torch.testing.assert_close(flex(q, k, v), triton(q, k, v), atol=1e-5, rtol=1e-4)
    assert sorted(runs) == [False, True]  # (flex also plans its padded problem: another mask)
    assert flex.plan is triton.plan is plan_of(spec)


def test_plans_are_shared_only_by_specs_that_read_alike():
    spec = ac.variants.sliding_window(64)
    assert plan_of(spec) is plan_of(spec) and plan_of(plan_of(spec)) is plan_of(spec)
    renamed = replace(spec, name="other")
    assert renamed == spec and plan_of(renamed) is not plan_of(spec)  # names appear in kernels and messages
    # equal Programs capturing different tensors: each analysis reads its own
    one, two = torch.zeros(1, 128, dtype=torch.int32), torch.arange(128, dtype=torch.int32)[None] // 64
    a, b = (replace(ac.variants.document(), bindings=(("doc", t),)) for t in (one, two))
    assert a == b and plan_of(a) is not plan_of(b)
    # causal within documents: one document leaves one empty tile, two leave two
    assert ac.analyze(a, 128, block=64).counts["empty"] == 1 and ac.analyze(b, 128, block=64).counts["empty"] == 2


def test_layouts_are_cached_by_sizes_and_runtime_tensors():
    spec = ac.variants.document()
    doc = torch.zeros(1, 256, dtype=torch.int32)
    doc[:, 100:] = 1
    first = ac.analyze(spec, 256, block=32, tensors={"doc": doc})
    assert ac.analyze(spec, 256, block=32, tensors={"doc": doc}) is first
    assert ac.analyze(spec, 256, block=(32, 64), tensors={"doc": doc}) is not first
    assert ac.analyze(spec, 256, block=32, tensors={"doc": doc.clone()}) is not first  # equal values, new tensor
    doc[:, 200:] = 2  # in place: the version counter moves
    second = ac.analyze(spec, 256, block=32, tensors={"doc": doc})
    assert second is not first and second.counts != first.counts


def test_report_simulation_and_kernels_reuse_the_analysis():
    spec = ac.variants.sliding_window(128)
    layout = ac.analyze(spec, 1024, block=(128, 128), heads=4)
    builds = plan_of(spec).layouts.builds
    ac.simulate(spec, "h100", heads=4, q_len=1024, head_dim=128, block=(128, 128))
    assert ac.compile(spec, backend="flex").layout(1024, 1024, heads=4) is layout
    assert plan_of(spec).layouts.builds == builds


def test_the_layout_cache_is_bounded():
    spec = ac.variants.causal()
    for length in range(64, 64 * (LAYOUTS + 5), 64):
        ac.analyze(spec, length, block=64)
    assert len(plan_of(spec).layouts.entries) == LAYOUTS


def test_flex_layouts_analyze_the_optimized_spec():
    """``layout`` (true sizes) is the analysis of the plan, hoisted score mod included;
    ``padded_layout`` (what runs) pads the same optimized mask."""
    spec = ac.variants.causal_score()
    kernel = ac.compile(spec, backend="flex", compiled=False)
    assert kernel.layout(200, 200) is ac.analyze(spec, 200, block=128)
    assert kernel.layout(200, 200).counts == {"empty": 1, "partial": 2, "full": 1}
    assert kernel.padded_layout(200, 200).counts == {"empty": 1, "partial": 3, "full": 0}
