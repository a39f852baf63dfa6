"""Parsing cascade text into a ``Program``.

The syntax is line-based; ``#`` starts a comment::

    param lam: float = 0.8                  # named scalar parameter
    tensor doc[B, L]: int32                 # runtime tensor read by masks / score mods
    input Q1[b,h,m,d], K1[b,h,n,d]          # big inputs (Q, K, V need no declaration)
    mask[b,h,m,n] = (m >= n) & (doc[b, m] == doc[b, n])
    select[b,h,m,j] = topk(mean(K1), Q1, k=3, block=64, eligible=j <= m // 64)  # see ir/selection.py
    S1[b,h,m,n] = Q1[b,h,m,d] * K1[b,h,n,d] # d is summed: it is not on the left
    P1[b,h,m,n] = softmax[n](S1 * scale)    # scale defaults to 1/sqrt(size of d)
    O[b,h,m,e] = (P1 - lam * P2) * V        # a bare name means its defined indices

Right-hand sides are Python expressions (parsed with :mod:`ast`, so precedence is
Python's): ``+ - * / // % **``, comparisons (chains are split into ``&``), ``& | ^ ~``,
``where(c, a, b)`` (or ``a if c else b``), the functions named in ``printer.CALLS``
(``abs min max exp log sqrt tanh sigmoid relu floor float int`` ...), reductions
``softmax[n](x)``, ``max[n](x)``, ``sum[n](x)``, ``softmax[n](x, sink)`` (a sink logit in
the normalizer, no value), and ``score(x)`` for the score function given to ``ac.cascade``.
``q_idx``/``kv_idx`` are accepted as names for the letters ``m``/``n``.
"""

from __future__ import annotations

import ast
import math
import re

from ..errors import AttncompError, CascadeError, Location
from . import expr as E
from .ops import BINARY, WHERE, Op, arity
from .printer import CALLS
from .program import Eqn, InputDecl, Program
from .selection import LETTERS, POOLS, RULES, Selection

_FUNCS = {name: op for op, name in CALLS.items()}
_REDUCE = {"softmax": Op.SOFTMAX, "max": Op.REDUCE_MAX, "sum": Op.REDUCE_SUM}


def _mean(letter: str, x: E.Expr) -> E.Expr:
    """``mean[l](x)`` = ``sum[l](x) / sum[l](1.0)``, for letters the mask does not restrict
    (``e``, ``d``): ``sum[l](1.0)`` is the size of ``l``."""
    return E.binary("truediv", E.reduce("reduce_sum", letter, x), E.reduce("reduce_sum", letter, E.const(1.0)))


# Functions written in terms of the IR's ops (the printer shows the expansion).
_SUGAR = {
    "rsqrt": lambda x: E.binary("truediv", E.const(1.0), E.unary("sqrt", x)),
    "sign": lambda x: E.where(E.binary("gt", x, E.const(0.0)), E.const(1.0),
                              E.where(E.binary("lt", x, E.const(0.0)), E.const(-1.0), E.binary("mul", x, E.const(0.0)))),
}
_ALIASES = {"q_idx": "m", "kv_idx": "n"}
_BINOPS = {
    ast.Add: Op.ADD, ast.Sub: Op.SUB, ast.Mult: Op.MUL, ast.Div: Op.TRUEDIV, ast.FloorDiv: Op.FLOORDIV,
    ast.Mod: Op.MOD, ast.Pow: Op.POW, ast.BitAnd: Op.AND, ast.BitOr: Op.OR, ast.BitXor: Op.XOR,
    ast.LShift: Op.LSHIFT, ast.RShift: Op.RSHIFT,
}
_CMPOPS = {ast.Lt: Op.LT, ast.LtE: Op.LE, ast.Gt: Op.GT, ast.GtE: Op.GE, ast.Eq: Op.EQ, ast.NotEq: Op.NE}
IMPLICIT_INPUTS = ("Q", "K", "V")

_PARAM = re.compile(r"^param\s+([A-Za-z_]\w*)\s*:\s*(int|float)\s*=\s*(.+)$")
_TENSOR = re.compile(r"^tensor\s+([A-Za-z_]\w*)\s*\[([^\]]*)\]\s*:\s*(\w+)$")
_INPUT = re.compile(r"^input\s+(.+)$")
_DECL = re.compile(r"\s*([A-Za-z_]\w*)\s*\[([^\]]*)\]\s*(,|$)")


class _LineError(Exception):
    """A problem on the current line; turned into a CascadeError quoting it."""


def _number(text: str) -> int | float:
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").strip()
    if body == "inf":
        return sign * math.inf
    value = ast.literal_eval(body)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _LineError(f"parameter value {text!r} is not a number")
    return sign * value


def _names(text: str) -> tuple[str, ...]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    for x in items:
        if not x.isidentifier():
            raise _LineError(f"{x!r} is not an index letter")
    return tuple(_ALIASES.get(x, x) for x in items)


class _Parser:
    def __init__(self, name, score, params, where):
        self.name, self.score, self.where = name, score, where
        self.given = dict(params or {})
        self.params: dict[str, int | float | None] = {}
        self.tensors: dict[str, E.TensorDecl] = {}
        self.inputs: list[InputDecl] = []
        self.defined: dict[str, tuple[str, ...]] = {}
        self.eqns: list[Eqn] = []
        self.mask: E.Expr | None = None
        self.selection: Selection | None = None
        self.score_used = False
        self.implicit: list[str] = []  # Q, K, V used without an `input` line

    def ordered_inputs(self) -> tuple[InputDecl, ...]:
        """Undeclared Q, K, V come first, in that order, so ``kernel(q, k, v)`` binds them."""
        implicit = sorted((i for i in self.inputs if i.name in self.implicit), key=lambda i: IMPLICIT_INPUTS.index(i.name))
        return tuple(implicit) + tuple(i for i in self.inputs if i.name not in self.implicit)

    # --- lines ---------------------------------------------------------------------------
    def line(self, text: str, lineno: int) -> None:
        if m := _PARAM.match(text):
            name, kind, value = m.group(1), m.group(2), _number(m.group(3))
            if kind == "int" and (isinstance(value, float) and not value.is_integer()):
                raise _LineError(f"param {name} is declared int but its value is {value}")
            self.params[name] = int(value) if kind == "int" else float(value)
        elif m := _TENSOR.match(text):
            name, dims, dtype = m.groups()
            if dtype not in E.TENSOR_DTYPES:
                raise _LineError(f"unknown dtype {dtype!r}; use one of {sorted(E.TENSOR_DTYPES)}")
            parsed = tuple(int(d) if d.strip().isdigit() else d.strip() for d in dims.split(",") if d.strip())
            self.tensors[name] = E.TensorDecl(name, parsed, dtype)
        elif m := _INPUT.match(text):
            rest = m.group(1)
            for decl in _DECL.finditer(rest):
                self.declare_input(decl.group(1), _names(decl.group(2)))
            if _DECL.sub("", rest).strip():
                raise _LineError("expected `input NAME[letters], NAME[letters], ...`")
        else:
            self.equation(text, lineno)

    def declare_input(self, name: str, letters: tuple[str, ...]) -> None:
        if name in self.defined:
            raise _LineError(f"tensor {name} is declared twice")
        self.inputs.append(InputDecl(name, letters))
        self.defined[name] = letters

    def equation(self, text: str, lineno: int) -> None:
        try:
            tree = ast.parse(text, mode="exec")
        except RecursionError:
            raise _LineError(f"the expression nests too deeply (at most {E.MAX_DEPTH} operations)") from None
        except SyntaxError as err:
            caret = " " * max((err.offset or 1) - 1, 0) + "^"
            raise _LineError(f"syntax error: {err.msg}\n    {text}\n    {caret}") from None
        stmt = tree.body[0] if len(tree.body) == 1 else None
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Subscript)
                and isinstance(stmt.targets[0].value, ast.Name)):
            raise _LineError("expected an equation `NAME[letters] = expression`, a `param`, `tensor` or `input` line")
        target = stmt.targets[0]
        name = target.value.id
        letters = self.letters(target.slice)
        if len(set(letters)) != len(letters):
            raise _LineError(f"index letters {list(letters)} on the left repeat")
        self.letters_here = set(letters) | set(E.MASK_LETTERS) | self.bound_letters(stmt.value)
        if name == "select":
            if self.selection is not None:
                raise _LineError("the selection is defined twice")
            if letters != LETTERS:
                raise _LineError(f"the selection is indexed [b,h,m,j] (j: the key block), not {list(letters)}")
            self.selection = self.select(stmt.value)
            return
        try:
            rhs = self.expr(stmt.value)
        except RecursionError:
            raise _LineError(f"the expression nests too deeply (at most {E.MAX_DEPTH} operations)") from None
        E.check_depth(rhs, f"the expression of {name}")
        if name == "mask":
            if self.mask is not None:
                raise _LineError("the mask is defined twice (by the text, or by the text and mask=)")
            if set(letters) != set(E.MASK_LETTERS):
                raise _LineError(f"the mask is indexed [b,h,m,n], not {list(letters)}")
            self.mask = rhs
            return
        if name in self.defined or name in self.tensors:
            raise _LineError(f"tensor {name} is defined twice")
        self.eqns.append(Eqn(name, letters, rhs, lineno))
        self.defined[name] = letters

    def select(self, node: ast.AST) -> Selection:
        """``topk(mean(K), Q, k=..., block=..., eligible=..., forced=..., shared=True, normalize=True)``."""
        usage = ("a selection is RULE(POOL(K), Q, COUNT=..., block=..., eligible=..., [forced=...], "
                 f"[query_block=...], [shared=True], [normalize=True]) with RULE one of {', '.join(RULES)} (COUNT: "
                 f"{', '.join(RULES.values())}) and POOL one of {', '.join(POOLS)}")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in RULES
                and len(node.args) == 2 and isinstance(node.args[0], ast.Call)
                and isinstance(node.args[0].func, ast.Name) and node.args[0].func.id in POOLS
                and len(node.args[0].args) == 1 and isinstance(node.args[0].args[0], ast.Name)
                and isinstance(node.args[1], ast.Name)):
            raise _LineError(usage)
        rule, pool = node.func.id, node.args[0].func.id
        keys, query = node.args[0].args[0].id, node.args[1].id
        for ident, letters in ((query, ("b", "h", "m", "d")), (keys, ("b", "h", "n", "d"))):
            if ident not in self.defined and ident in IMPLICIT_INPUTS:
                self.declare_input(ident, letters)
                self.implicit.append(ident)
        words = {kw.arg: kw.value for kw in node.keywords}
        count = RULES[rule]
        allowed = {count, "block", "eligible", "forced", "query_block", "shared", "normalize"}
        if not {count, "block", "eligible"} <= set(words) or set(words) - allowed:
            raise _LineError(usage)
        flags = {}
        for flag in ("shared", "normalize"):
            value = words.get(flag, ast.Constant(False))
            if not (isinstance(value, ast.Constant) and isinstance(value.value, bool)):
                raise _LineError(f"{flag}= takes True or False")
            flags[flag] = value.value
        optional = {w: self.expr(words[w]) if w in words else None for w in ("forced", "query_block")}
        return Selection(rule, pool, self.expr(words[count]), self.expr(words["block"]), self.expr(words["eligible"]),
                         optional["forced"], q=query, k=keys, query_block=optional["query_block"], **flags)

    # --- expressions -----------------------------------------------------------------------
    def letters(self, node: ast.AST) -> tuple[str, ...]:
        items = node.elts if isinstance(node, ast.Tuple) else [node]
        out = []
        for item in items:
            if not isinstance(item, ast.Name):
                raise _LineError(f"index `{ast.unparse(item)}` must be a single index letter")
            out.append(_ALIASES.get(item.id, item.id))
        return tuple(out)

    def bound_letters(self, node: ast.AST) -> set[str]:
        """Letters named as plain subscripts of cascade tensors and of reductions."""
        found: set[str] = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name):
                if sub.value.id in self.tensors:
                    continue
                items = sub.slice.elts if isinstance(sub.slice, ast.Tuple) else [sub.slice]
                found |= {_ALIASES.get(i.id, i.id) for i in items if isinstance(i, ast.Name)}
        return found

    def resolve(self, ident: str) -> E.Expr:
        if ident in self.given or ident in self.params:
            return E.param(ident, self.given.get(ident, self.params.get(ident)))
        if ident == "scale":
            return E.param("scale", None)
        if ident == "inf":
            return E.const(math.inf)
        if ident in self.defined:
            return E.ref(ident, self.defined[ident])
        if ident in self.tensors and not self.tensors[ident].dims:
            return E.load(self.tensors[ident], ())  # a 0-dim tensor is read by its bare name
        if ident in self.tensors:
            raise _LineError(f"runtime tensor {ident} needs indices, e.g. {ident}[{', '.join(map(str, self.tensors[ident].dims))}]")
        letter = _ALIASES.get(ident, ident)
        if letter in self.letters_here:
            return E.var(letter)
        raise _LineError(
            f"undeclared name {ident!r}: not an index letter of this equation, a param "
            f"({', '.join(self.params) or 'none declared'}; declare `param {ident}: float = ...` or pass "
            f"params={{'{ident}': ...}}) or a tensor ({', '.join(self.defined) or 'none'})")

    def subscript(self, node: ast.Subscript) -> E.Expr:
        if not isinstance(node.value, ast.Name):
            raise _LineError(f"cannot index `{ast.unparse(node.value)}`")
        ident = node.value.id
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if ident in self.tensors:
            return E.load(self.tensors[ident], tuple(self.expr(i) for i in items))
        letters = self.letters(node.slice)
        if ident not in self.defined:
            if ident in IMPLICIT_INPUTS:
                self.declare_input(ident, letters)
                self.implicit.append(ident)
            else:
                raise _LineError(
                    f"undefined tensor {ident}: it is not an input ({', '.join(i.name for i in self.inputs) or 'none'}), "
                    f"not defined by an earlier equation, and not a runtime tensor; declare it with "
                    f"`input {ident}[{','.join(letters)}]` or `tensor {ident}[...]: dtype`")
        if len(letters) != len(self.defined[ident]):
            raise _LineError(
                f"shape conflict: {ident} has {len(self.defined[ident])} indices "
                f"[{','.join(self.defined[ident])}] but is used as {ast.unparse(node)}")
        return E.ref(ident, letters)

    def call(self, node: ast.Call) -> E.Expr:
        if node.keywords:
            raise _LineError(f"keyword arguments are not supported: {ast.unparse(node)}")
        args = [self.expr(a) for a in node.args]
        func = node.func
        if isinstance(func, ast.Subscript) and isinstance(func.value, ast.Name) and func.value.id in (*_REDUCE, "mean"):
            (letter,) = self.letters(func.slice) if not isinstance(func.slice, ast.Tuple) else (None,)
            sink = func.value.id == "softmax" and len(args) == 2
            if letter is None or not (len(args) == 1 or sink):
                raise _LineError(f"a reduction takes one letter and one argument (a softmax may take a second: its "
                                 f"sink logit): {ast.unparse(node)}")
            if sink:
                if letter in E.letters_of(args[1]):
                    raise _LineError(f"the sink logit of {ast.unparse(node)} depends on {letter}, the letter the "
                                     f"softmax normalizes over; a sink is one extra logit per row")
                return E.reduce(Op.SOFTMAX, letter, *args)
            if func.value.id == "mean":
                if letter in ("m", "n"):  # a mask keeps a different number of pairs per row
                    raise _LineError(f"mean[{letter}] is not defined under a mask (each row keeps its own number "
                                     f"of pairs); write sum[{letter}](x) over the count you mean")
                return _mean(letter, args[0])
            return E.reduce(_REDUCE[func.value.id], letter, args[0])
        if not isinstance(func, ast.Name):
            raise _LineError(f"unknown function `{ast.unparse(func)}`")
        if func.id == "score":
            if self.score is None:
                raise _LineError("score(...) is called but no score function was given to ac.cascade(score=...)")
            if len(args) != 1:
                raise _LineError("score(...) takes one argument, the raw score")
            self.score_used = True
            return E.substitute(self.score, {E.var("score"): args[0]})
        if func.id in _SUGAR:
            if len(args) != 1:
                raise _LineError(f"{func.id}() takes 1 argument, got {len(args)}")
            return _SUGAR[func.id](args[0])
        op = _FUNCS.get(func.id)
        if op is None:
            raise _LineError(f"unknown function {func.id}(); known: {', '.join(sorted([*_FUNCS, *_SUGAR]))}, "
                             f"softmax[n], max[n], sum[n], mean[n]")
        if len(args) != arity(op):
            raise _LineError(f"{func.id}() takes {arity(op)} argument(s), got {len(args)}")
        if op in WHERE:
            return E.where(*args)
        return E.binary(op, *args) if op in BINARY else E.unary(op, args[0])

    def expr(self, node: ast.AST) -> E.Expr:
        if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float)):
            return E.const(node.value)
        if isinstance(node, ast.Name):
            return self.resolve(node.id)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return E.binary(_BINOPS[type(node.op)], self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.UnaryOp):
            x = self.expr(node.operand)
            if isinstance(node.op, ast.USub):
                return E.unary("neg", x)
            if isinstance(node.op, ast.UAdd):
                return x
            if isinstance(node.op, ast.Not) and x.dtype != E.BOOL:
                raise _LineError(f"`not` needs a boolean: {ast.unparse(node)}")
            return E.unary("invert", x)
        if isinstance(node, ast.BoolOp):
            values = [self.expr(v) for v in node.values]
            op = "and" if isinstance(node.op, ast.And) else "or"
            out = values[0]
            for v in values[1:]:
                out = E.binary(op, out, v)
            return out
        if isinstance(node, ast.Compare):
            left, out = self.expr(node.left), None
            for cmp, right_node in zip(node.ops, node.comparators):
                if type(cmp) not in _CMPOPS:
                    raise _LineError(f"unsupported comparison in {ast.unparse(node)}")
                right = self.expr(right_node)
                term = E.binary(_CMPOPS[type(cmp)], left, right)
                out = term if out is None else E.binary("and", out, term)
                left = right
            return out
        if isinstance(node, ast.IfExp):
            return E.where(self.expr(node.test), self.expr(node.body), self.expr(node.orelse))
        raise _LineError(f"unsupported expression `{ast.unparse(node)}`")


def parse_program(text: str, name: str = "cascade", mask: E.Expr | None = None, score: E.Expr | None = None,
                  params: dict | None = None, where: Location | None = None,
                  bindings: tuple = ()) -> Program:
    """Parse cascade text (see the module docstring) into a verified Program.

    >>> p = parse_program('''
    ... S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
    ... P[b,h,m,n] = softmax[n](S * scale)
    ... O[b,h,m,e] = P * V[b,h,n,e]
    ... ''')
    >>> parse_program(str(p)) == p
    True
    """
    from .verify import verify

    parser = _Parser(name, score, params, where)
    parser.mask = mask
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            parser.line(line, lineno)
        except _LineError as err:
            raise CascadeError(f"line {lineno}: {err}\n    {raw.strip()}", variant=name, location=where) from None
        except AttncompError as err:  # from an IR constructor: what is wrong, quoted with the line
            raise CascadeError(f"line {lineno}: {err.summary}\n    {raw.strip()}", variant=name, hint=err.hint,
                               location=where) from None
    if not parser.eqns:
        raise CascadeError("the cascade has no equations", variant=name, location=where)
    if score is not None and not parser.score_used:
        raise CascadeError("a score function was given but the cascade never calls score(...)", variant=name,
                           location=where)
    used = [q.rhs for q in parser.eqns] + [parser.mask] + list(parser.selection.exprs if parser.selection else ())
    unused = set(parser.given) - {n for e in used if e is not None for n in E.params_of(e)}
    if unused:
        raise CascadeError(f"params {sorted(unused)} were given but the cascade does not use them", variant=name,
                           location=where)
    program = Program(parser.ordered_inputs(), tuple(parser.eqns), parser.mask, parser.selection, name=name,
                      bindings=bindings, source=where)
    verify(program)
    return program
