"""A brand-new mask the library does not have: causal attention to a local window, to the
first token of every 256-token segment ("segment summaries"), and to a few global tokens.
Is it worth a kernel? Analyze it, cost it, and get a verified kernel."""

from _common import LENGTH

import attncomp as ac
from attncomp.report import report

WINDOW, SEGMENT, GLOBAL = 512, 256, 4


def local_plus_summaries(b, h, q_idx, kv_idx):
    causal = q_idx >= kv_idx
    local = q_idx - kv_idx < WINDOW
    summary = kv_idx % SEGMENT == 0
    return causal & (local | summary | (kv_idx < GLOBAL))


spec = ac.attention(mask=local_plus_summaries)
rep = report(spec, q_len=LENGTH, heads=16, check_size=300)
print(rep.summary())
print(f"\nevery row touches the summary tokens' tiles: {rep.layout.counts['partial']} partial tiles, "
      f"so a kernel is worth it only if partial tiles are cheap; the simulator's mask share says how cheap.")
