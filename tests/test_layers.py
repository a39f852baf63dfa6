"""The package's layering, read from the sources: what each module imports (at module
level and inside functions, relative imports resolved) must respect the layers.

``attncomp.ir`` is the bottom layer: it imports nothing from backends, the simulator,
the variants library, the report or the CLI, and nothing FlexAttention-specific. The
passes work on Programs and do not import the frontend (tracing, parsing). Inside
``attncomp.ir`` there are no import cycles; an import written inside a function still
counts, unless its line says ``# late import`` (and why).
"""

import ast
import os

import pytest

import attncomp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(attncomp.__file__)))
UPPER = ("attncomp.backends", "attncomp.simulator", "attncomp.variants", "attncomp.report", "attncomp.cli")
FRONTEND = ("attncomp.ir.attention", "attncomp.ir.trace", "attncomp.ir.parse")


def modules(root: str = ROOT) -> dict[str, tuple[str, bool]]:
    """Every module of the attncomp package: dotted name -> (path, is a package)."""
    out = {}
    for directory, _, files in os.walk(os.path.join(root, "attncomp")):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                name = os.path.relpath(path, root)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                out[name] = (path, file == "__init__.py")
    return out


def imports(name: str, path: str, is_package: bool, known) -> list[tuple[str, int, bool]]:
    """(imported module, line, labelled late) for every import statement in the file.
    ``from X import y`` imports the module ``X.y`` when there is one, else ``X``."""
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    lines = source.splitlines()
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source, path)
    # imports under `if TYPE_CHECKING:` are for annotations only and never run
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and ast.unparse(block.test).endswith(
        "TYPE_CHECKING") for stmt in block.body for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in typing_only:
            continue
        late = "# late import" in lines[node.lineno - 1]
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, late) for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in known else base, node.lineno, late))
    return out


def graph(root: str = ROOT) -> dict[str, list[tuple[str, int, bool]]]:
    known = modules(root)
    return {name: imports(name, path, pkg, known) for name, (path, pkg) in known.items()}


def inside(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(edges) -> list[str]:
    found = []
    for src, targets in edges.items():
        if not inside(src, "attncomp.ir"):
            continue
        for target, line, _ in targets:
            if inside(target, *UPPER):
                found.append(f"{src}:{line} imports {target} (a layer above the IR)")
            if inside(target, "torch.nn.attention.flex_attention"):
                found.append(f"{src}:{line} imports {target} (FlexAttention belongs to the flex backend)")
            if inside(src, "attncomp.ir.passes") and inside(target, *FRONTEND):
                found.append(f"{src}:{line} imports {target} (passes do not import the frontend)")
    return sorted(set(found))


def ir_cycles(edges) -> list[list[str]]:
    """The import cycles inside attncomp.ir, as the modules of each strongly connected
    component with more than one member (two modules are in one when each reaches the other)."""
    graph: dict[str, set[str]] = {}
    for src, targets in edges.items():
        for target, _, late in targets:
            if inside(src, "attncomp.ir") and inside(target, "attncomp.ir") and not late and target != src:
                graph.setdefault(src, set()).add(target)

    def reach(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in graph.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    reached = {node: reach(node) for node in graph}
    components = {tuple(sorted({node} | {o for o in reached[node] if node in reached.get(o, ())}))
                  for node in graph}
    return sorted(list(c) for c in components if len(c) > 1)


def test_ir_imports_nothing_above_it():
    assert violations(graph()) == []


def test_no_import_cycles_inside_the_ir():
    assert ir_cycles(graph()) == []


def _write(root, files: dict[str, str]):
    for rel, text in files.items():
        path = os.path.join(root, "attncomp", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


@pytest.mark.parametrize("files,found", [
    ({"ir/__init__.py": "", "ir/layout.py": "def f():\n    from ..backends import flex\n", "backends/__init__.py": "",
      "backends/flex.py": ""}, ["attncomp.ir.layout:2 imports attncomp.backends.flex"]),
    ({"ir/__init__.py": "", "ir/layout.py": "def f():\n    from torch.nn.attention.flex_attention import BlockMask\n"},
     ["attncomp.ir.layout:2 imports torch.nn.attention.flex_attention"]),
    ({"ir/__init__.py": "", "ir/passes/__init__.py": "", "ir/passes/hoist.py": "from ..attention import match\n",
      "ir/attention.py": ""}, ["attncomp.ir.passes.hoist:1 imports attncomp.ir.attention"]),
])
def test_the_checks_see_function_level_and_relative_imports(tmp_path, files, found):
    _write(str(tmp_path), files)
    assert [v.split(" (")[0] for v in violations(graph(str(tmp_path)))] == found


def test_a_function_level_cycle_counts_unless_labelled(tmp_path):
    _write(str(tmp_path), {"ir/__init__.py": "", "ir/expr.py": "def show():\n    from .trace import STATE\n",
                           "ir/trace.py": "from . import expr\n"})
    assert ir_cycles(graph(str(tmp_path))) == [["attncomp.ir.expr", "attncomp.ir.trace"]]
    _write(str(tmp_path), {"ir/expr.py": "def show():\n    from .trace import STATE  # late import: why\n"})
    assert ir_cycles(graph(str(tmp_path))) == []
