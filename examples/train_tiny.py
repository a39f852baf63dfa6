"""Training through attncomp: a tiny one-layer model with a custom variant (a causal window
with a learned per-head distance slope, a captured tensor as in FlexAttention) learns to
copy a token from eight positions back. The same model trains through the Triton backend
(in Triton's interpreter on CPU, its generated FlashAttention-2 backward) and through the
reference backend (autograd on the dense evaluation): the losses agree at every step."""

import torch
from _common import FAST

import attncomp as ac

VOCAB, DIM, HEADS, LENGTH, LAG = 16, 32, 2, 64, 8
STEPS = 4 if FAST else 30


class TinyModel(torch.nn.Module):
    def __init__(self, backend: str):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, DIM)
        self.qkv = torch.nn.Linear(DIM, 3 * DIM)
        self.out = torch.nn.Linear(DIM, VOCAB)
        self.slopes = torch.nn.Parameter(torch.zeros(HEADS))  # learned: how fast each head forgets
        slopes = self.slopes

        def window(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < 16)

        def distance(score, b, h, q_idx, kv_idx):
            return score - slopes[h] * (q_idx - kv_idx)

        spec = ac.attention(mask=window, score=distance, name="learned_window")
        self.attend = ac.compile(spec, backend=backend, **({"block": (16, 16)} if backend == "triton" else {}))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        q, k, v = (t.unflatten(-1, (HEADS, DIM // HEADS)).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        o = self.attend(q.contiguous(), k.contiguous(), v.contiguous())
        return self.out(x + o.transpose(1, 2).flatten(2))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, VOCAB, (4, LENGTH), generator=torch.Generator().manual_seed(step))
    return tokens, torch.roll(tokens, LAG, 1)  # predict the token LAG positions back


models = {name: TinyModel(name) for name in ("triton", "reference")}
optimizers = {name: torch.optim.Adam(m.parameters(), lr=3e-2) for name, m in models.items()}
print("step | loss (triton) | loss (reference) | slopes (triton)")
for step in range(STEPS):
    tokens, target = batch(step)
    losses = {}
    for name, model in models.items():
        logits = model(tokens)[:, LAG:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), target[:, LAG:].reshape(-1))
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()
        losses[name] = loss.item()
    assert abs(losses["triton"] - losses["reference"]) < 1e-3 * max(1.0, losses["reference"]), losses
    slopes = ", ".join(f"{s:+.3f}" for s in models["triton"].slopes.tolist())
    print(f"{step:4d} | {losses['triton']:.4f} | {losses['reference']:.4f} | {slopes}")
