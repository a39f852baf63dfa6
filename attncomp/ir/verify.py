"""Static checks on a Program, each failure a ``CascadeError`` quoting the equation.

Checked: every tensor read is an input or defined earlier; a tensor is used with as many
indices as it was defined with, each a distinct letter; every letter on the left of an
equation occurs on the right; no letter summed outside a reduction hides inside it; every letter
is an index of some input (otherwise its size is unknown); runtime tensors and params
are declared consistently; the mask is boolean over ``b, h, m, n`` only.
"""

from __future__ import annotations

from ..errors import CascadeError
from . import expr as E
from .program import Program
from .selection import LETTERS as SELECT_LETTERS


def _fail(program: Program, message: str, where_text: str | None = None, line: int = 0) -> CascadeError:
    quote = f"\n    {where_text}" if where_text else ""
    at_line = f"line {line}: " if line else ""
    return CascadeError(f"{at_line}{message}{quote}", variant=program.name, location=program.source)


def _check_expr(program: Program, rhs: E.Expr, text: str, line: int, decls: dict, params: dict) -> None:
    for node in E.walk(rhs):
        if node.op == "var" and node.arg == "score":
            raise _fail(program, "`score` is only meaningful inside a score function", text, line)
        if node.op == "load":
            seen = decls.setdefault(node.arg.name, node.arg)
            if seen != node.arg:
                raise _fail(program, f"runtime tensor {node.arg.name} is declared twice differently: {seen} and {node.arg}", text, line)
        if node.op == "param":
            name, value = node.arg
            if params.setdefault(name, value) != value:
                raise _fail(program, f"parameter {name} has two values: {params[name]!r} and {value!r}", text, line)
        if node.op == "ref":
            letters = [s.arg for s in node.src]
            if len(set(letters)) != len(letters):
                raise _fail(program, f"{node.arg}[{','.join(letters)}] repeats an index letter (diagonals are not supported)", text, line)


def verify(program: Program) -> None:
    """Raise ``CascadeError`` if ``program`` is malformed; return None if it is sound."""
    decls: dict[str, E.TensorDecl] = {}
    params: dict[str, int | float | None] = {}
    defined: dict[str, tuple[str, ...]] = {}
    sized: set[str] = set()
    for inp in program.inputs:
        if inp.name in defined:
            raise _fail(program, f"input {inp.name} is declared twice")
        if len(set(inp.letters)) != len(inp.letters):
            raise _fail(program, f"input {inp} repeats an index letter")
        defined[inp.name] = inp.letters
        sized |= set(inp.letters)

    for eqn in program.eqns:
        text = eqn.format(defined)
        if eqn.name in defined:
            raise _fail(program, f"tensor {eqn.name} is defined twice", text, eqn.line)
        if len(set(eqn.letters)) != len(eqn.letters):
            raise _fail(program, f"index letters {list(eqn.letters)} on the left repeat", text, eqn.line)
        for node in E.walk(eqn.rhs):
            if node.op == "ref":
                if node.arg not in defined:
                    raise _fail(program, f"undefined tensor {node.arg} (defined so far: {', '.join(defined)})", text, eqn.line)
                if len(node.src) != len(defined[node.arg]):
                    raise _fail(program, f"shape conflict: {node.arg} has indices [{','.join(defined[node.arg])}] "
                                         f"but is used with {len(node.src)}", text, eqn.line)
        _check_expr(program, eqn.rhs, text, eqn.line, decls, params)
        free = E.letters_of(eqn.rhs)
        missing = [x for x in eqn.letters if x not in free]
        if missing:
            raise _fail(program, f"index letter(s) {', '.join(missing)} on the left of {eqn.name} "
                                 "do not occur on the right", text, eqn.line)
        for node in E.walk(eqn.rhs):
            if node.op == E.Op.SOFTMAX and len(node.src) == 2:
                sink = node.src[1]
                if node.arg in E.letters_of(sink) or any(n.op in E.REDUCTIONS or n.op == "ref" for n in E.walk(sink)):
                    raise _fail(program, f"the sink logit `{sink}` of a softmax over {node.arg} must be one value "
                                         f"per row: free of {node.arg}, reading no cascade tensor", text, eqn.line)
                if sink.dtype == E.BOOL:
                    raise _fail(program, f"the sink logit `{sink}` is a boolean; it must be a number", text, eqn.line)
            leak = sorted(E.letters_of(node.src[0]) - {node.arg} - set(eqn.letters)) if node.op in E.REDUCTIONS else []
            if leak:
                raise _fail(program, f"index {', '.join(leak)} inside `{node}` is summed outside the reduction "
                                     f"(letters missing on the left are summed over each whole term); "
                                     f"compute the contraction in its own equation first, e.g. S[...] = Q * K",
                            text, eqn.line)
        if eqn.rhs.dtype == E.BOOL:
            raise _fail(program, f"{eqn.name} is a boolean; equations compute numbers (use where(cond, x, y))", text, eqn.line)
        unsized = sorted(x for x in free | set(eqn.letters) if x not in sized)
        if unsized:
            raise _fail(program, f"index letter(s) {', '.join(unsized)} are not indices of any input "
                                 f"({', '.join(map(str, program.inputs))}), so their size is unknown", text, eqn.line)
        defined[eqn.name] = eqn.letters

    if program.mask is not None:
        text = f"mask[b,h,m,n] = {program.mask}"
        if program.mask.dtype != E.BOOL:
            raise _fail(program, f"the mask must be a boolean expression, not {program.mask.dtype}", text)
        bad = E.letters_of(program.mask) - set(E.MASK_LETTERS)
        if bad:
            raise _fail(program, f"the mask may only use b, h, m (q_idx), n (kv_idx); it uses {', '.join(sorted(bad))}", text)
        if any(n.op in E.REDUCTIONS or n.op == "ref" for n in E.walk(program.mask)):
            raise _fail(program, "the mask cannot read cascade tensors or reduce; it is a predicate on indices", text)
        _check_expr(program, program.mask, text, 0, decls, params)
        unsized = sorted(E.letters_of(program.mask) - sized)
        if unsized:
            raise _fail(program, f"the mask uses {', '.join(unsized)}, which no input is indexed by", text)

    if program.selection is not None:
        _verify_selection(program, decls, params)

    for name in params:
        if name in defined or name in decls:
            raise _fail(program, f"parameter {name} has the same name as a tensor")
    for name in decls:
        if name in defined:
            raise _fail(program, f"runtime tensor {name} has the same name as a cascade tensor")


def _verify_selection(program: Program, decls: dict, params: dict) -> None:
    """A selection reads a query input [b,h,m,d] and a key input [b,h,n,d]; its count and
    block are numbers free of indices; eligible and forced are predicates of b, h, m, j
    (free of h where one choice is shared by a KV group)."""
    sel = program.selection
    text = sel.format()
    inputs = {i.name: i.letters for i in program.inputs}
    for name, letters in ((sel.q, ("b", "h", "m", "d")), (sel.k, ("b", "h", "n", "d"))):
        if inputs.get(name) != letters:
            raise _fail(program, f"the selection reads {name}, which must be an input [{','.join(letters)}]", text)
    for what, expr in (("count", sel.count), ("block", sel.block), ("query_block", sel.query_block)):
        if expr is None:
            continue
        if E.letters_of(expr) or any(n.op in ("load", "ref") or n.op in E.REDUCTIONS for n in E.walk(expr)):
            raise _fail(program, f"the selection's {what} `{expr}` must be a number (a constant or a param)", text)
        _check_expr(program, expr, text, 0, decls, params)
    for what, expr in (("block", sel.block), ("query_block", sel.query_block)):
        if expr is not None and expr.dtype != E.INT:
            raise _fail(program, f"the selection's {what} `{expr}` must be an int", text)
    for what, expr in (("eligible", sel.eligible), ("forced", sel.forced)):
        if expr is None:
            continue
        if expr.dtype != E.BOOL:
            raise _fail(program, f"the selection's {what} `{expr}` must be a boolean predicate of b, h, m, j", text)
        bad = E.letters_of(expr) - set(SELECT_LETTERS) | ({"h"} & E.letters_of(expr) if sel.shared else set())
        if bad:
            where = " (a shared choice is one per KV group, so not per head)" if sel.shared else ""
            raise _fail(program, f"the selection's {what} `{expr}` uses {', '.join(sorted(bad))}; it may use "
                                 f"b, h, m (the query) and j (the key block){where}", text)
        if any(n.op == "ref" or n.op in E.REDUCTIONS for n in E.walk(expr)):
            raise _fail(program, f"the selection's {what} cannot read cascade tensors or reduce", text)
        _check_expr(program, expr, text, 0, decls, params)
