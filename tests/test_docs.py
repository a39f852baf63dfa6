"""Every Python code block in the README and docs runs, and every example script runs."""

import glob
import os
import re
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def python_blocks(path):
    text = open(path, encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("path", DOCS, ids=[os.path.relpath(p, ROOT) for p in DOCS])
def test_doc_code_blocks_run(path):
    blocks = python_blocks(path)
    if not blocks:
        assert console_commands(path), f"{path} has no code blocks"
        return
    scope = {}
    for block in blocks:  # blocks of one document share a namespace, like a reader's session
        exec(compile(block, path, "exec"), scope)


def console_commands(path):
    text = open(path, encoding="utf-8").read()
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [line[2:].strip() for block in blocks for line in block.splitlines() if line.startswith("$ ")]


COMMANDS = [(os.path.relpath(p, ROOT), c) for p in DOCS for c in console_commands(p)]


@pytest.mark.parametrize("doc,command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_doc_commands_run(doc, command):
    import shlex
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "attncomp")
    args = shlex.split(command)
    assert args[0] == "attncomp", f"{doc}: only attncomp commands are documented"
    res = subprocess.run([exe] + args[1:], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr


EXAMPLES = sorted(p for p in glob.glob(os.path.join(ROOT, "examples", "*.py")) if not os.path.basename(p).startswith("_"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_runs(path, capsys, monkeypatch):
    monkeypatch.setenv("ATTNCOMP_FAST", "1")  # CI sizes
    monkeypatch.syspath_prepend(os.path.dirname(path))
    monkeypatch.delitem(__import__("sys").modules, "_common", raising=False)
    runpy.run_path(path, run_name="__main__")
    out = capsys.readouterr().out
    assert out and "FAIL" not in out
