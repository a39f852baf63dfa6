"""Bad arguments to every public function and every CLI option: each ends in an
AttncompError (the CLI: exit status 2 and one error line, the last; the report's progress
lines may come before it), never another exception type."""

from __future__ import annotations

import inspect

import pytest
import torch

import attncomp as ac
from attncomp.cli import main
from attncomp.variants import REGISTRY

BAD = [None, -1, 0, 1.5, "x", [], {}, object(), float("nan"), float("inf"), 2 ** 70, True, torch.tensor([1, 2]),
       (1, 2, 3), lambda: 0]


def leaks(calls) -> list[str]:
    """Each ``(label, thunk)`` that raised something other than an AttncompError."""
    found = []
    for label, call in calls:
        try:
            call()
        except ac.AttncompError:
            pass
        except Exception as err:  # noqa: BLE001 - what this test looks for
            found.append(f"{label}: {type(err).__name__}: {err}")
    return found


def _bad(value):
    return f"{value!r}"[:40]


def test_bad_arguments_to_the_api_are_attncomp_errors():
    causal = ac.variants.causal()
    mask = lambda b, h, q_idx, kv_idx: q_idx >= kv_idx  # noqa: E731
    q = torch.randn(1, 1, 16, 8)
    kernels = {"reference": ac.compile(causal), "triton": ac.compile(causal, backend="triton", block=16),
               "flex": ac.compile(causal, backend="flex", compiled=False)}
    calls = []
    for v in BAD:
        calls += [(f"simulate({name}={_bad(v)})", lambda name=name, v=v: ac.simulate(causal, **({"q_len": 512} | {name: v})))
                  for name in inspect.signature(ac.simulate.__wrapped__).parameters if name not in ("spec", "kwargs")]
        calls += [(f"simulator.simulate({name}={_bad(v)})",
                   lambda name=name, v=v: ac.simulate(causal, **({"q_len": 512} | {name: v})))
                  for name in ("batch", "heads", "kv_heads", "q_len", "kv_len", "head_dim", "value_dim", "dtype",
                               "block", "tensors", "family", "order", "layout", "efficiency_table")]
        calls += [(f"analyze({name}={_bad(v)})", lambda name=name, v=v: ac.analyze(causal, **({"q_len": 256} | {name: v})))
                  for name in ("q_len", "kv_len", "block", "tensors", "batch", "heads")]
        calls += [
            (f"analyze({_bad(v)})", lambda v=v: ac.analyze(v)),
            (f"simulate({_bad(v)})", lambda v=v: ac.simulate(v)),
            (f"compile({_bad(v)})", lambda v=v: ac.compile(v)),
            (f"compile(backend={_bad(v)})", lambda v=v: ac.compile(causal, backend=v)),
            (f"attention(mask={_bad(v)})", lambda v=v: ac.attention(mask=v)),
            (f"attention(score={_bad(v)})", lambda v=v: ac.attention(score=v)),
            (f"attention(scale={_bad(v)})", lambda v=v: ac.attention(mask=mask, scale=v)),
            (f"attention(name={_bad(v)})", lambda v=v: ac.attention(name=v)),
            (f"cascade({_bad(v)})", lambda v=v: ac.cascade(v)),
            (f"cascade(params={_bad(v)})", lambda v=v: ac.cascade("S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]\n"
                                                                 "O[b,h,m,e] = softmax[n](S * scale) * V[b,h,n,e]", params=v)),
            (f"param({_bad(v)}, 3)", lambda v=v: ac.param(v, 3)),
            (f"param('w', {_bad(v)})", lambda v=v: ac.param("w", v)),
            (f"tensor({_bad(v)}, ...)", lambda v=v: ac.tensor(v, ("L",), "int32")),
            (f"tensor(dims={_bad(v)})", lambda v=v: ac.tensor("t", v, "int32")),
            (f"tensor(dtype={_bad(v)})", lambda v=v: ac.tensor("t", ("L",), v)),
        ]
        for backend, kernel in kernels.items():
            calls += [(f"compile({backend}, {opt}={_bad(v)})", lambda b=backend, o=opt, v=v: ac.compile(causal, backend=b, **{o: v}))
                      for opt in ("block", "compiled", "budget", "store_lse", "count")]
            calls += [(f"{backend} kernel({_bad(v)}, k, v)", lambda k=kernel, v=v: k(v, q, q)),
                      (f"{backend} kernel(q, k, v, nope={_bad(v)})", lambda k=kernel, v=v: k(q, q, q, nope=v))]
    for name, variant in REGISTRY.items():
        for arg in inspect.signature(variant.factory).parameters:
            calls += [(f"variants.{name}({arg}={_bad(v)})", lambda f=variant.factory, a=arg, v=v: f(**{a: v}))
                      for v in BAD]
    assert len(calls) > 2000
    assert leaks(calls) == []


CLI_OPTIONS = {
    "show": ["--q-len", "--kv-len", "--param", "--head", "--batch-index", "--tensor"],
    "analyze": ["--q-len", "--kv-len", "--block", "--batch", "--heads", "--head", "--param", "--tensor", "--png"],
    "compile": ["--backend", "-o", "--block", "--param"],
    "simulate": ["--hardware", "--q-len", "--kv-len", "--batch", "--heads", "--kv-heads", "--head-dim", "--dtype",
                 "--block", "--family", "--sweep", "--param", "--tensor"],
    "report": ["--q-len", "--batch", "--heads", "--head-dim", "--dtype", "--hardware", "--param", "--tensor"],
}
CLI_BAD = ["-1", "0", "x", "1e99", "", "nan", "99999999999999999999", "a=b=c", "/nonexistent/dir/f", "64,64,64"]


@pytest.mark.parametrize("command", CLI_OPTIONS)
def test_bad_cli_options_exit_2_with_one_line(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a value that is a valid file name (--png x, -o 0) is written here
    bad = []
    for option in CLI_OPTIONS[command]:
        for value in CLI_BAD:
            argv = [command, "sliding_window", option, value, "--q-len" if option != "--q-len" else "--kv-len", "512"]
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code
            err = capsys.readouterr().err.strip()
            if code == 0:
                continue  # a value that happens to be valid (--param window=..., a writable path)
            errors = [line for line in err.splitlines() if "error:" in line]
            if code != 2 or errors != err.splitlines()[-1:] or "Traceback" in err:
                bad.append(f"{' '.join(argv)}: exit {code}: {err[:200]}")
    assert bad == []
