"""The hardware simulator: predict the time and speedup of any spec on A100/H100/H200/B200
(and this CPU) from its Program and its exact block layout, before a kernel exists."""

from .hardware import GPUS, Hardware, gpu, this_cpu
from .model import FAMILIES, Family
from .simulate import Estimate, simulate

__all__ = ["Estimate", "FAMILIES", "Family", "GPUS", "Hardware", "gpu", "simulate", "this_cpu"]
