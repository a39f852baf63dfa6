"""Checking the sizes a user passes (lengths, heads, head dims, blocks) and the runtime
tensors they name, with messages that give the valid range. Shared by analysis, the
simulator, the backends and the CLI, so one bad value reads the same everywhere."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import AttncompError


LIMIT = 2 ** 31  # lengths, heads, batch: beyond this a value is a typo (and int64 tile arithmetic overflows)


def positive_int(name: str, value, variant: str | None = None, *, limit: int = LIMIT) -> int:
    """``value`` if it is an int in ``1..limit``, else an AttncompError saying so.

    >>> positive_int("heads", 8)
    8
    >>> positive_int("head_dim", -64, "causal")
    Traceback (most recent call last):
    ...
    attncomp.errors.AttncompError: causal: head_dim must be a positive int, got -64
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AttncompError(f"{name} must be a positive int, got {value!r}", variant=variant)
    if value > limit:
        raise AttncompError(f"{name} must be at most {limit}, got {value}", variant=variant)
    return value


def flag(name: str, value, variant: str | None = None) -> bool:
    """``value`` if it is True or False (a kernel option), else an AttncompError."""
    if not isinstance(value, bool):
        raise AttncompError(f"{name} must be True or False, got {value!r}", variant=variant)
    return value


def block_shape(block, variant: str | None = None, *, power_of_two: bool = False,
                minimum: int = 1) -> tuple[int, int]:
    """``(BLOCK_M, BLOCK_N)`` from one int or two; kernels that tile with ``tl.arange``
    need powers of two (``power_of_two``) of at least ``minimum``.

    >>> block_shape(64), block_shape((128, 64))
    ((64, 64), (128, 64))
    >>> block_shape(48, power_of_two=True, minimum=16)
    Traceback (most recent call last):
    ...
    attncomp.errors.AttncompError: block must be one power of two >= 16 or two (BLOCK_M, BLOCK_N), got 48
    """
    if isinstance(block, int) and not isinstance(block, bool):
        pair = (block, block)
    elif isinstance(block, (tuple, list)) and len(block) == 2:
        pair = tuple(block)
    else:
        pair = None
    kind = f"power of two >= {minimum}" if power_of_two else "positive int"
    ok = pair is not None and all(isinstance(x, int) and not isinstance(x, bool) and max(1, minimum) <= x < LIMIT
                                  and (not power_of_two or x & (x - 1) == 0) for x in pair)
    if not ok:
        raise AttncompError(f"block must be one {kind} or two (BLOCK_M, BLOCK_N), got {block!r}", variant=variant)
    return pair


def known_tensors(program, tensors: dict | None) -> dict:
    """``tensors`` if every name is a runtime tensor ``program`` declares: a misspelled name
    would otherwise leave the captured default in use without a word."""
    if tensors is not None and not isinstance(tensors, Mapping):
        raise AttncompError(f"tensors must be a dict of runtime tensors by name, got {type(tensors).__name__}",
                            variant=program.name)
    tensors = dict(tensors or {})
    unknown = sorted(set(tensors) - set(program.tensors))
    if unknown:
        declared = ", ".join(program.tensors) or "none"
        raise AttncompError(f"unknown runtime tensor(s) {', '.join(unknown)}; {program.name} declares: {declared}",
                            variant=program.name)
    return tensors
