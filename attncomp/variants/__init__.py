"""The library of attention variants from the literature (VARIANTS.md), as factories
returning Programs, and a registry for the CLI and tests.

>>> from attncomp import variants
>>> spec = variants.sliding_window(window=128)
>>> spec.params
{'scale': None, 'window': 128}
"""

from .cascades import causal_linear, differential, gated_attention, sigmoid_attention
from .grids import coordinates, grid_attention, neighborhood, window_attention
from .heads import gqa, per_head_window
from .masks import (
                    block_diagonal,
                    blockwise_causal,
                    causal,
                    dilated_sliding_window,
                    document,
                    global_window,
                    power_attention,
                    prefix_lm,
                    random_documents,
                    s2_attention,
                    sliding_window,
                    streaming,
                    strided_heads,
)
from .registry import REGISTRY, Example, Variant, example_inputs, get
from .selection import moba, nsa_selection, quest, topk_blocks
from .scores import (
                     alibi,
                     alibi_slopes,
                     causal_score,
                     learned_sinks,
                     sink_scaling,
                     softcap,
                     t5_bias,
                     token_type_bias,
)

__all__ = [
    "REGISTRY", "Example", "Variant", "example_inputs", "get",
    "causal", "sliding_window", "streaming", "prefix_lm", "document", "dilated_sliding_window", "global_window",
    "s2_attention", "strided_heads", "power_attention", "blockwise_causal", "block_diagonal", "random_documents",
    "neighborhood", "window_attention", "grid_attention", "coordinates",
    "alibi", "alibi_slopes", "softcap", "t5_bias", "sink_scaling", "token_type_bias", "causal_score", "learned_sinks",
    "gqa", "per_head_window",
    "differential", "sigmoid_attention", "causal_linear", "gated_attention",
    "moba", "nsa_selection", "quest", "topk_blocks",
]
