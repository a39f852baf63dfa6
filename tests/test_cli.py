"""The attncomp command: list and show, for built-ins and user files."""

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
