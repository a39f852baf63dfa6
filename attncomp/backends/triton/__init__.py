"""The Triton backend: readable flash-attention kernels generated from the IR."""

from .kernel import TritonKernel
from .plan import Plan, lower

__all__ = ["Plan", "TritonKernel", "lower"]
