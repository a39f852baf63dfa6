"""Text pictures of masks: one character per (query, key) entry, or per cell of entries
when the mask is larger than the picture (full, partial and empty cells differ)."""

from __future__ import annotations

import math

import torch

FULL, PARTIAL, EMPTY = "█", "▒", "·"


def mask_picture(grid: torch.Tensor, max_cells: int = 64) -> str:
    """Draw a 2-D bool tensor ``[q, kv]``; rows are queries, columns keys.

    >>> import torch
    >>> print(mask_picture(torch.ones(3, 3, dtype=torch.bool).tril()))
    █··
    ██·
    ███
    """
    q, kv = grid.shape
    cm, cn = math.ceil(q / max_cells), math.ceil(kv / max_cells)
    if cm == cn == 1:
        return "\n".join("".join(FULL if x else EMPTY for x in row) for row in grid.tolist())
    rows = math.ceil(q / cm)
    cols = math.ceil(kv / cn)
    padded = torch.zeros(rows * cm, cols * cn, dtype=torch.int32)
    present = torch.zeros_like(padded)
    padded[:q, :kv] = grid.to(torch.int32)
    present[:q, :kv] = 1
    count = padded.reshape(rows, cm, cols, cn).sum((1, 3))
    total = present.reshape(rows, cm, cols, cn).sum((1, 3))
    chars = []
    for crow, trow in zip(count.tolist(), total.tolist()):
        chars.append("".join(EMPTY if c == 0 else FULL if c == t else PARTIAL for c, t in zip(crow, trow)))
    return "\n".join(chars)


def write_png(path: str, rgb) -> None:
    """Write an ``[H, W, 3]`` uint8 array as a PNG (zlib-compressed, no dependencies)."""
    import struct
    import zlib

    import numpy as np

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
