"""The dataflow of a Program: what each equation reads, and the orders to walk it in.

The equations of a verified Program are a DAG already listed in a topological order
(``verify`` checks that every tensor is defined before it is read). So no graph library
is needed, and none is imported on the way to a first analysis (networkx's import alone
is 150 ms, five times a cold ``analyze``): the forward order is the list; the reverse
order, the one a backward pass accumulates gradients in, is the list reversed; and what
reaches the output is one sweep backwards from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .expr import walk

if TYPE_CHECKING:
    from .program import Program

MASK = "mask"


@dataclass(frozen=True)
class Dataflow:
    """A Program's dataflow DAG. ``kinds`` names every node (``input``, ``runtime``,
    ``intermediate``, ``output``, ``mask``); ``reads`` maps each computed node, the mask
    first and then the equations in program order, to the nodes it reads. The mask
    restricts every equation's iteration space, so every equation reads it.

    >>> import attncomp as ac
    >>> flow = ac.variants.differential().dataflow()
    >>> flow.reads["O"], flow.readers("S1"), flow.kinds["P1"]
    (('P1', 'P2', 'V', 'mask'), ('P1',), 'intermediate')
    >>> flow.reverse_order()
    ('O', 'P2', 'P1', 'S2', 'S1')
    """

    kinds: dict[str, str]
    reads: dict[str, tuple[str, ...]]
    output: str

    def readers(self, name: str) -> tuple[str, ...]:
        """The computed nodes that read ``name``, in program order."""
        return tuple(node for node, read in self.reads.items() if name in read)

    def live(self) -> set[str]:
        """Every node whose value reaches the output, the output included."""
        live = {self.output}
        for node in reversed(self.reads):
            if node in live:
                live.update(self.reads[node])
        return live

    def reverse_order(self) -> tuple[str, ...]:
        """The equations that reach the output, from the output back: each comes after
        every equation that reads it (the order a backward pass walks)."""
        live = self.live()
        return tuple(node for node in reversed(self.reads) if node in live and node != MASK)


def dataflow(program: Program) -> Dataflow:
    """The :class:`Dataflow` of ``program``."""
    kinds = {i.name: "input" for i in program.inputs}
    kinds.update({name: "runtime" for name in program.tensors})
    reads: dict[str, tuple[str, ...]] = {}
    computed = [(MASK, program.mask)] if program.mask is not None else []
    for name, rhs in computed + [(e.name, e.rhs) for e in program.eqns]:
        kinds[name] = MASK if name == MASK else "output" if name == program.output else "intermediate"
        read = [n.arg if n.op == "ref" else n.arg.name for n in walk(rhs) if n.op in ("ref", "load")]
        reads[name] = tuple(dict.fromkeys(read + ([MASK] if program.mask is not None and name != MASK else [])))
    return Dataflow(kinds, reads, program.output)
