"""A library variant's example problem for the backends' error-ratio checks."""

from dataclasses import dataclass

import torch

import attncomp as ac
from attncomp.variants import REGISTRY, example_inputs


@dataclass
class Case:
    program: ac.Program
    tensors: dict    # runtime tensors (document ids, windows, ...)
    inputs: dict     # Q, K, V, ... in float64
    low: dict        # the same inputs rounded to the precision under test
    golden: torch.Tensor  # the float64 reference output


def variant_case(name: str, q_len: int, kv_len: int | None, heads: int, dtype: torch.dtype,
                 seeds: tuple[int, int], **overrides) -> Case:
    """Variant ``name`` (built with ``overrides``) at batch 2, head dim 16: its runtime
    tensors from ``seeds[0]``, its inputs from ``seeds[1]``, and the reference output."""
    variant = REGISTRY[name]
    program = variant.build(**overrides)
    ex = variant.example(q_len, kv_len, batch=2, heads=heads, head_dim=16, **overrides)
    tensors = variant.example_tensors(ex, seed=seeds[0], **overrides)
    inputs = example_inputs(program, ex, dtype=torch.float64, seed=seeds[1])
    low = {k: v.to(dtype) for k, v in inputs.items()}
    return Case(program, tensors, inputs, low, ac.compile(program)(**inputs, **tensors))
