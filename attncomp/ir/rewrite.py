"""Rewriting expressions with rule tables: a small pattern matcher and one bottom-up pass.

In the spirit of tinygrad's ``UPat``/``PatternMatcher``, smaller. A ``Pat`` describes a
node: its op (or a group of ops), its children's patterns, its argument, its dtype, and a
name to bind the matched node to (a name bound twice must match equal nodes, so
``where(c, a, a)`` is one pattern). A rule is ``(pattern, fn)``: ``fn`` receives the bound
nodes as keyword arguments and returns the replacement, or None to decline, and then the
next rule is tried. ``graph_rewrite`` rebuilds an expression children first and offers
each rebuilt node to the rules once: a rule's result is not rewritten again, so
``m -> min(m, 7)`` terminates.

This module knows nodes only by their ``op``, ``src``, ``arg``, ``dtype`` and
``with_src``, so ``expr`` can build ``substitute`` on it without an import cycle.

>>> from attncomp.ir.expr import var, const, binary
>>> add_zero = Rules([(Pat(Op.ADD, Pat(name="x"), Pat(Op.CONST, arg=0)), lambda x: x)])
>>> m = var("m")
>>> str(graph_rewrite(binary("mul", binary("add", m, const(0)), const(2)), add_zero))
'm * 2'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .ops import Op

_ANY = object()


class Pat:
    """A pattern for one node: ``Pat(op_or_group, *children, arg=, dtype=, name=, test=)``.

    ``op`` is an ``Op``, a set of ops, or None for any op; children, when given, must
    match the node's children in order (and their number); ``arg`` must equal the node's
    argument with the same type (``0`` does not match ``False`` or ``0.0``); ``test`` is a
    predicate on the node for what the fields cannot say.
    """

    __slots__ = ("ops", "src", "arg", "dtype", "name", "test", "anything")

    def __init__(self, op: Op | frozenset | None = None, *src: Pat, arg: Any = _ANY, dtype: str | None = None,
                 name: str | None = None, test: Callable[[Any], bool] | None = None):
        self.ops = None if op is None else frozenset({op}) if isinstance(op, Op) else frozenset(op)
        self.src = src or None
        self.arg, self.dtype, self.name, self.test = arg, dtype, name, test
        self.anything = op is None and not src and arg is _ANY and dtype is None and test is None

    def match(self, node, bound: dict) -> bool:
        """Whether ``node`` matches, adding the names it binds to ``bound``."""
        if self.anything and (self.name is None or self.name not in bound):  # the common leaf: bind and go
            if self.name is not None:
                bound[self.name] = node
            return True
        if self.ops is not None and node.op not in self.ops:
            return False
        if self.dtype is not None and node.dtype != self.dtype:
            return False
        if self.arg is not _ANY and not (type(node.arg) is type(self.arg) and node.arg == self.arg):
            return False
        if self.src is not None and (len(node.src) != len(self.src)
                                     or not all(p.match(s, bound) for p, s in zip(self.src, node.src))):
            return False
        if self.test is not None and not self.test(node):
            return False
        if self.name is not None:
            if self.name in bound:
                return bound[self.name] == node
            bound[self.name] = node
        return True


class Rules:
    """An ordered list of ``(Pat, fn)`` rules, indexed by op so a node meets only the
    rules that can match it."""

    def __init__(self, rules: list[tuple[Pat, Callable]]):
        self.rules = list(rules)
        self._by_op: dict[Op, list[tuple[Pat, Callable]]] = {}

    def __add__(self, other: Rules) -> Rules:
        return Rules(self.rules + other.rules)

    def rewrite(self, node):
        """The first non-None result of a matching rule, or None."""
        candidates = self._by_op.get(node.op)
        if candidates is None:
            candidates = self._by_op[node.op] = [(p, f) for p, f in self.rules if p.ops is None or node.op in p.ops]
        for pat, fn in candidates:
            bound: dict = {}
            if pat.match(node, bound):
                out = fn(**bound)
                if out is not None:
                    return out
        return None


def walk(expr) -> Iterator:
    """Every distinct node of ``expr``, children before parents."""
    seen: set = set()
    stack: list[tuple[Any, bool]] = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            yield node
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        stack.extend((s, False) for s in reversed(node.src))


def depth(expr) -> int:
    """The length of the longest path from ``expr`` to a leaf (a leaf has depth 1).

    The passes, printers and evaluators recurse over expressions, so attncomp bounds the
    depth a user can build (:data:`attncomp.ir.expr.MAX_DEPTH`) where the IR is made."""
    memo: dict = {}
    for node in walk(expr):
        memo[node] = 1 + max((memo[s] for s in node.src), default=0)
    return memo[expr]


def graph_rewrite(expr, rules: Rules | Callable):
    """``expr`` rebuilt bottom-up, each node (with its children already rewritten) replaced
    by the first rule that matches it; shared nodes are rewritten once. ``rules`` may also
    be a plain function of a node returning its replacement or None (``mapping.get``)."""
    rewrite = rules.rewrite if isinstance(rules, Rules) else rules
    done: dict = {}
    for node in walk(expr):
        src = tuple(done[s] for s in node.src) if node.src else ()
        new = node if src == node.src else node.with_src(src)
        out = rewrite(new)
        done[node] = new if out is None else out
    return done[expr]
