"""The backend registry: one small interface every backend implements.

A backend is a :class:`Kernel` subclass that registers itself with :func:`register`. The
kernel is built from the spec's :class:`~attncomp.ir.plan.Plan` (the spec optimized once),
emits its ``source`` there, and on each call binds the tensors to its Program (shape, GQA
and runtime-tensor checks shared by all backends, :mod:`.binding`) and ``run``s. ``ac.compile``,
the report and the CLI find backends here, so adding one is a module with a registered
Kernel, imported from ``attncomp/backends/__init__.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..errors import UnsupportedError, api_boundary
from ..ir.analysis.loads import check_loads
from ..ir.plan import Plan, plan_of
from ..ir.program import Program
from .binding import Bound, bind
from .cache import CallCache


class Kernel(abc.ABC):
    """What ``ac.compile`` returns: ``kernel(*inputs, **tensors) -> out`` and ``kernel.source``
    (the generated code, None where nothing is generated). A call binds the tensors to
    ``program`` and ``run`` computes the output of the bound call."""

    backend: ClassVar[str]
    source: str | None = None
    differentiable: ClassVar[bool] = False  # has a backward; until then inputs needing grad are refused
    selects: ClassVar[bool] = False  # runs a Program's data-dependent selection stage

    def __init__(self, spec: Program | Plan):
        self.plan = plan_of(spec)
        self.spec = self.plan.spec
        if self.spec.selection is not None and not self.selects:
            can = ", ".join(sorted(name for name, b in BACKENDS.items() if b.kernel.selects))
            raise UnsupportedError(f"the {self.backend} backend cannot run a data-dependent selection stage "
                                   f"(`{self.spec.selection}`) yet", variant=self.spec.name,
                                   location=self.spec.source, hint=f"Backends that can: {can}")
        self.checked_loads = CallCache()

    @property
    def program(self) -> Program:
        """The optimized Program with parameters kept by name: what generated code prints."""
        return self.plan.named

    @abc.abstractmethod
    def run(self, bound: Bound) -> torch.Tensor: ...

    @api_boundary
    def __call__(self, *args: torch.Tensor, **tensors: torch.Tensor) -> torch.Tensor:
        # Bound against the spec as written, not the optimized program: a runtime tensor that
        # the passes proved unread (a dead equation, a folded-away load) is still a valid
        # argument, checked the same way on every backend.
        bound = bind(self.spec, args, tensors)
        self._refuse_grad(bound)
        if 0 in bound.sizes.values():  # nothing to attend over: rows with no key give 0, as masked rows do
            out = self.spec.eqns[-1]
            first = next(iter(bound.inputs.values()))
            return first.new_zeros([bound.sizes[x] for x in out.letters])
        self.checked_loads.get(bound, bound.device, lambda: check_loads(
            self.spec, bound.sizes.get("m", 1), bound.sizes.get("n", 1), bound.sizes.get("b", 1),
            bound.sizes.get("h", 1), bound.tensors, bound.params))
        return self.run(bound)

    def _refuse_grad(self, bound: Bound) -> None:
        """Never a silently detached output: where this kernel has no backward, an input that
        requires grad (with grad mode on) is an error."""
        if self.differentiable or not torch.is_grad_enabled():
            return
        needing = [n for n, t in (bound.inputs | bound.tensors).items() if t.requires_grad]
        if needing:
            raise UnsupportedError(f"{', '.join(needing)} require(s) grad, but the {self.backend} backend has no "
                                   f"backward yet, so its output would be detached from the graph",
                                   variant=self.spec.name,
                                   hint="backend='reference' is differentiable for every Program; for inference "
                                        "run under torch.no_grad() or pass .detach()ed tensors")


@dataclass(frozen=True)
class Backend:
    """A registered backend. ``title`` names it in reports; ``generated``: its kernels carry
    source (``attncomp compile`` writes it, the report checks it against the reference);
    ``check_options``: compile options for the report's small numerics check on this machine."""

    name: str
    title: str
    kernel: type[Kernel]
    generated: bool = True
    check_options: dict = field(default_factory=dict)

    def compile(self, plan: Plan, **options) -> Kernel:
        return self.kernel(plan, **options)


BACKENDS: dict[str, Backend] = {}


def register(name: str, title: str, **details):
    """Class decorator that registers a Kernel subclass as backend ``name``."""
    def add(cls: type[Kernel]) -> type[Kernel]:
        cls.backend = name
        BACKENDS[name] = Backend(name, title, cls, **details)
        return cls
    return add


def generated() -> list[Backend]:
    """The backends that generate kernel source, in registration order."""
    return [b for b in BACKENDS.values() if b.generated]
