"""Per-call artifacts (BlockMasks, block lists on a device) cached across kernel calls.

The key is the problem's sizes, the device, and every runtime tensor by identity and
version counter (:func:`attncomp.ir.plan.tensor_key`): a new or modified document-id
tensor builds anew, an unchanged one does not. The layouts these are built from are
cached on the plan, so a second kernel of the same spec reuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ir.plan import Memo, tensor_key


class CallCache(Memo):
    """A small LRU keyed by a bound call (see :class:`attncomp.backends.binding.Bound`)."""

    def __init__(self, size: int = 16):
        super().__init__(size)

    @staticmethod
    def key(bound, device) -> tuple:
        return tuple(sorted(bound.sizes.items())), str(device), tensor_key(bound.tensors)

    def get(self, bound, device, build: Callable[[], Any]) -> Any:
        return super().get(self.key(bound, device), build, hold=tuple(bound.tensors.values()))
