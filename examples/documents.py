"""A5: packed documents. The mask depends on runtime data (document ids): declared as a
runtime tensor it takes any length, and the mask is written as for FlexAttention."""

import torch
from _common import LENGTH

import attncomp as ac
from attncomp.report import report

document_id = ac.tensor("document_id", ("L",), "int64")


def document_causal(b, h, q_idx, kv_idx):
    return (document_id[q_idx] == document_id[kv_idx]) & (q_idx >= kv_idx)


spec = ac.attention(mask=document_causal)
ids = lambda parts: torch.repeat_interleave(torch.arange(4), torch.tensor(parts))
big = {"document_id": ids([LENGTH // 2, LENGTH // 4, LENGTH // 8, LENGTH // 8])}
small = {"document_id": ids([128, 64, 32, 32])}
print(report(spec, q_len=LENGTH, tensors=big, tensors_for=lambda n: small, check_size=256).summary())
