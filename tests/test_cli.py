"""The attncomp command: list and show, for built-ins and user files."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from attncomp.cli import main, parse_size
from attncomp.variants import REGISTRY


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_variant(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in REGISTRY:
        assert name in out
    assert "A1   causal" in out


def test_show_builtin_with_param(capsys):
    code, out, _ = run(capsys, "show", "sliding_window", "--q-len", "12", "--param", "window=3")
    assert code == 0
    assert "mask[b,h,m,n] = (m >= n) & (m - n < window)" in out
    assert "param window: int = 3" in out
    picture = out.strip().splitlines()[-12:]
    assert picture[0] == "█" + "·" * 11
    assert picture[5] == "···███" + "·" * 6
    assert "33 of 144 pairs" in out


def test_show_grid_downsamples(capsys):
    code, out, _ = run(capsys, "show", "neighborhood_2d_tiled")
    assert code == 0
    rows = out.strip().splitlines()[-64:]
    assert all(len(r) == 64 for r in rows)
    assert set("".join(rows)) <= {"█", "▒", "·"}


def test_show_document_uses_example_tensors(capsys):
    code, out, _ = run(capsys, "show", "document", "--q-len", "40")
    assert code == 0 and "doc[B, L]" in out


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_masks.py"
    path.write_text(textwrap.dedent('''
        import torch
        import attncomp as ac

        def checkerboard(b, h, q_idx, kv_idx):
            return (q_idx + kv_idx) % 2 == 0

        spec = ac.attention(mask=checkerboard, name="checker")

        def factory(width=4):
            return ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx - kv_idx).abs() < width, name="band")

        def broken(b, h, q_idx, kv_idx):
            return q_idx > kv_idx or q_idx == 0
    '''))
    return str(path)


def test_show_user_file_program(capsys, user_file):
    code, out, _ = run(capsys, "show", user_file, "--q-len", "4")
    assert code == 0
    assert "# attncomp program: checker" in out
    assert out.strip().splitlines()[-4:] == ["█·█·", "·█·█", "█·█·", "·█·█"]


def test_show_user_file_mask_function_and_factory(capsys, user_file):
    code, out, _ = run(capsys, "show", f"{user_file}:checkerboard", "--q-len", "2")
    assert code == 0 and "(m + n) % 2 == 0" in out
    code, out, _ = run(capsys, "show", f"{user_file}:factory", "--param", "width=2", "--q-len", "3")
    assert code == 0 and "abs(m - n) < 2" in out


def test_errors_are_messages_not_tracebacks(capsys, user_file):
    code, _, err = run(capsys, "show", f"{user_file}:broken")
    assert code == 2
    assert "Use `&`" in err and "my_masks.py:14" in err and "Traceback" not in err
    code, _, err = run(capsys, "show", "slidng_window")
    assert code == 2 and "unknown variant" in err
    code, _, err = run(capsys, "show", "sliding_window", "--param", "widow=3")
    assert code == 2 and "unknown argument(s) ['widow']" in err


def test_sizes():
    assert parse_size("32k") == 32768 and parse_size("1m") == 1 << 20 and parse_size("1000") == 1000


def test_console_script_runs():
    exe = os.path.join(os.path.dirname(sys.executable), "attncomp")
    result = subprocess.run([exe, "show", "causal", "--q-len", "3"], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("█··\n██·\n███")


def test_analyze_prints_counts_and_picture(capsys):
    code, out, _ = run(capsys, "analyze", "causal", "--q-len", "8k")
    assert code == 0
    assert "64 partial, 2016 full, 2016 empty" in out
    assert "mask density (kept pairs): 0.5001" in out
    assert out.strip().splitlines()[-1].startswith("█") and out.strip().splitlines()[-1].endswith("▒")


def test_analyze_json_and_png(capsys, tmp_path):
    import json
    png = str(tmp_path / "sw.png")
    code, out, _ = run(capsys, "analyze", "sliding_window", "--q-len", "8192", "--param", "window=1024",
                       "--block", "128", "--json", "--png", png)
    assert code == 0
    data = json.loads(out)
    assert data["counts"]["partial"] == 120 and data["counts"]["full"] == 420
    assert open(png, "rb").read(4) == b"\x89PNG"


def test_analyze_grid_variant_uses_its_length(capsys):
    code, out, _ = run(capsys, "analyze", "neighborhood_2d", "--block", "16,16")
    assert code == 0 and "q_len=144 kv_len=144" in out


def test_compile_writes_sources(capsys, tmp_path):
    out = str(tmp_path / "k.py")
    code, text, _ = run(capsys, "compile", "document", "--backend", "triton", "-o", out)
    assert code == 0 and "triton kernel written" in text
    source = open(out).read()
    assert "@triton.jit" in source and "def attention(" in source
    compile(source, out, "exec")
    code, text, _ = run(capsys, "compile", "sliding_window", "--backend", "flex", "--param", "window=256")
    assert code == 0 and "WINDOW = 256" in text and "def mask_mod(b, h, q_idx, kv_idx):" in text
    code, _, err = run(capsys, "compile", "differential", "--backend", "flex")
    assert code == 2 and "backend='triton'" in err


def test_simulate_table_sweep_and_json(capsys):
    import json
    code, out, _ = run(capsys, "simulate", "causal", "--q-len", "16k", "--hardware", "h100,b200",
                       "--sweep", "block=64,128")
    assert code == 0 and out.count("| h100-sxm5 |") == 2 and out.count("| b200 |") == 2
    code, out, _ = run(capsys, "simulate", "sliding_window", "--q-len", "8k", "--hardware", "h100", "--json",
                       "--sweep", "window=512,2048")
    data = json.loads(out)
    assert [d["sweep"]["window"] for d in data] == [512, 2048]
    assert data[0]["speedup"] > data[1]["speedup"]


def console(*argv):
    exe = os.path.join(os.path.dirname(sys.executable), "attncomp")
    return subprocess.run([exe, *argv], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv", [
    ("analyze", "causal", "--q-len", "0"),
    ("analyze", "causal", "--param", "nope=3"),
    ("analyze", "causal", "--batch", "0"),
    ("analyze", "causal", "--heads", "2", "--head", "5"),
    ("show", "causal", "--head", "-1"),
    ("simulate", "causal", "--head-dim", "-64"),
    ("simulate", "causal", "--dtype", "fp8", "--hardware", "a100"),
    ("simulate", "causal", "--hardware", "h900"),
    ("compile", "causal", "-o", "/nonexistent/dir/x.py"),
    ("compile", "causal", "--backend", "triton", "--block", "48"),
    ("analyze", "sliding_window", "--param", "window=abc"),
    ("analyze", "causal", "--tensor", "doc"),
    ("nosuchcommand",),
])
def test_every_usage_error_is_one_line_and_exit_2(argv):
    result = console(*argv)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], result.stderr
    assert "bin/attncomp" not in lines[0]  # the launcher is not the user's line


def test_runtime_tensors_from_files(tmp_path, user_file):
    import numpy as np
    import torch

    path = tmp_path / "docmask.py"
    path.write_text(textwrap.dedent("""
        import attncomp as ac
        doc = ac.tensor("doc", ("B", "L"), "int32")

        def document(b, h, q_idx, kv_idx):
            return (doc[b, q_idx] == doc[b, kv_idx]) & (q_idx >= kv_idx)
    """))
    ids = torch.arange(1024, dtype=torch.int32).div(256, rounding_mode="floor")[None]  # four documents
    torch.save(ids, tmp_path / "doc.pt")
    np.save(tmp_path / "doc.npy", ids.numpy())
    missing = console("analyze", f"{path}:document", "--q-len", "1024")
    assert missing.returncode == 2 and "--tensor NAME=FILE.pt" in missing.stderr
    for file in ("doc.pt", "doc.npy"):
        result = console("analyze", f"{path}:document", "--q-len", "1024", "--block", "128", "--json",
                         "--tensor", f"doc={tmp_path / file}")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["counts"] == {"empty": 52, "partial": 8, "full": 4}  # four 2x2-tile documents
    wrong = console("analyze", f"{path}:document", "--tensor", f"docs={tmp_path / 'doc.pt'}")
    assert wrong.returncode == 2 and "declares no such runtime tensor" in wrong.stderr


def test_json_is_strict_for_a_mask_that_keeps_nothing(tmp_path):
    path = tmp_path / "nothing.py"
    path.write_text("def nothing(b, h, q_idx, kv_idx):\n    return q_idx < 0\n")
    for command in ("analyze", "simulate"):
        result = console(command, f"{path}:nothing", "--q-len", "1k", "--json")
        assert result.returncode == 0, result.stderr
        assert "Infinity" not in result.stdout and "NaN" not in result.stdout
        json.loads(result.stdout)  # strict
    est = json.loads(console("simulate", f"{path}:nothing", "--q-len", "1k", "--json").stdout)[0]
    assert est["flop_ratio"] is None and est["speedup"] <= est["bound"] <= est["flop_bound"]


def test_show_draws_long_sequences_from_the_analysis(capsys):
    code, out, _ = run(capsys, "show", "causal", "--q-len", "100000")
    assert code == 0 and "drawn from the exact tile analysis" in out
    picture = out.strip().splitlines()[-64:]
    assert picture[0].startswith("▒·") and picture[-1].endswith("█▒")
