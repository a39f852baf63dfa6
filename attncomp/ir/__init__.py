"""The attncomp IR: index expressions, einsum-cascade Programs, tracing, parsing,
printing and verification. Imports nothing from backends or the simulator."""

from .analysis import BlockLayout, analyze
from .attention import attention, cascade, selection
from .expr import Expr, TensorDecl
from .parse import parse_program
from .program import Eqn, InputDecl, Program
from .selection import Selection
from .softmax import SoftmaxParts, match_softmax
from .trace import RuntimeTensor, param, tensor
from .verify import verify

__all__ = [
    "BlockLayout", "analyze", "Expr", "TensorDecl", "Eqn", "InputDecl", "Program", "SoftmaxParts", "RuntimeTensor",
    "Selection", "attention", "cascade", "match_softmax", "parse_program", "param", "selection", "tensor", "verify",
]
