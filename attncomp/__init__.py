"""attncomp: a declarative attention compiler and simulator.

Describe an attention variant as FlexAttention-style mask and score functions or as an
einsum cascade; attncomp verifies it, analyzes its block sparsity, lowers it to Triton or
FlexAttention, and predicts its speed on GPU models.
"""

from .backends import compile
from .errors import AttncompError, api_boundary
from .ir import Program, analyze, attention, cascade, param, selection, tensor

__all__ = ["AttncompError", "Program", "analyze", "attention", "cascade", "compile", "param", "selection", "simulate",
           "tensor", "variants"]
__version__ = "0.1.0"


@api_boundary
def simulate(spec, hardware="h100", **kwargs):
    """Predict ``spec``'s time, TFLOP/s and speedup on a GPU model; see
    :func:`attncomp.simulator.simulate`."""
    from .simulator import simulate as _simulate

    return _simulate(spec, hardware, **kwargs)


def __getattr__(name):
    if name == "variants":  # imported lazily: the library builds Programs at import
        import importlib

        return importlib.import_module(".variants", __name__)
    raise AttributeError(name)
