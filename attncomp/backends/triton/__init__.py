"""The Triton backend: readable flash-attention kernels generated from the IR."""

from .kernel import TritonKernel
from ...ir.lowering import KernelPlan, lower

__all__ = ["KernelPlan", "TritonKernel", "lower"]
