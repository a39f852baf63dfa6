"""The state of one trace: which torch tensors the traced functions captured.

A mask or score function may read tensors it closes over (``doc_ids[b, q_idx]``). While
:func:`tracing` is active, each captured tensor becomes a runtime tensor named after the
variable that holds it in the user's code, with the captured value as its default.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from ..errors import TraceError, _library_dirs
from . import expr as E

_STATE: ContextVar[TraceState | None] = ContextVar("attncomp_trace", default=None)


@dataclass
class TraceState:
    """Tensors captured while tracing one variant (shared by its mask and score mod)."""

    variant: str
    captured: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)

    def bindings(self) -> tuple[tuple[str, torch.Tensor], ...]:
        return tuple(self.captured.values())


@contextmanager
def tracing(variant: str, reserved: set[str] = frozenset()):
    state = TraceState(variant, reserved=set(reserved))
    token = _STATE.set(state)
    try:
        yield state
    finally:
        _STATE.reset(token)


def _torch_dtype_name(t: torch.Tensor) -> str:
    name = str(t.dtype).removeprefix("torch.")
    if name not in E.TENSOR_DTYPES:
        raise TraceError(f"captured tensor of dtype {t.dtype} is not supported")
    return name


def _find_name(tensor: torch.Tensor) -> str | None:
    """The variable that holds ``tensor`` in the user's innermost frame that has one."""
    lib = _library_dirs()
    frame = sys._getframe(1)
    while frame is not None:
        if not os.path.abspath(frame.f_code.co_filename).startswith(lib):
            for scope in (frame.f_locals, frame.f_globals):
                for key, value in list(scope.items()):
                    if value is tensor and key.isidentifier() and not key.startswith("_"):
                        return key
        frame = frame.f_back
    return None


def capture(tensor: torch.Tensor) -> E.TensorDecl:
    """Register a tensor captured by a traced function as a runtime tensor."""
    state = _STATE.get()
    if state is None:
        raise TraceError("torch tensors can only be captured inside a mask or score function passed to "
                         "ac.attention / ac.cascade", hint="Declare a runtime tensor with ac.tensor(...) instead")
    if id(tensor) not in state.captured:
        base = _find_name(tensor) or "tensor"
        name, k = base, 1
        taken = state.reserved | {n for n, _ in state.captured.values()}
        while name in taken or name in ("b", "h", "m", "n", "score", "mask", "scale"):
            name, k = f"{base}_{k}", k + 1
        state.captured[id(tensor)] = (name, tensor)
    name, _ = state.captured[id(tensor)]
    return E.TensorDecl(name, tuple(int(s) for s in tensor.shape), _torch_dtype_name(tensor))
