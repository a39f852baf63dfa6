"""Errors raised for user mistakes, located in the user's own code.

Every mistake a user can make (a mask that uses Python ``and`` on symbolic indices, a
cascade that reads an undefined tensor, a tensor of the wrong shape at call time) raises
an :class:`AttncompError` whose message names the variant, the offending expression or
shape, and the user's file and line. The location is found by walking the call stack
outward to the first frame that belongs to neither attncomp nor torch, so messages never
point into attncomp's internals.
"""

from __future__ import annotations

import linecache
import os
import sys
from dataclasses import dataclass

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _library_dirs() -> tuple[str, ...]:
    dirs = [_PACKAGE_DIR + os.sep]
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "__file__", None):
        dirs.append(os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)
    return tuple(dirs)


class AttncompError(Exception):
    """A mistake in the user's variant, cascade text or call, explained in user terms."""


class TraceError(AttncompError):
    """A mask or score function could not be traced into the IR."""


class CascadeError(AttncompError):
    """A cascade (text or Program) is malformed: syntax, undefined names, index letters."""


class ShapeError(AttncompError):
    """Tensors given at call time do not fit the Program (rank, size, dtype, missing)."""


class UnsupportedError(AttncompError):
    """A backend cannot run this Program; the message says which backend can and why."""


@dataclass(frozen=True)
class Location:
    """A place in the user's source: file, line and the text of that line."""

    filename: str
    lineno: int

    @property
    def line(self) -> str:
        return linecache.getline(self.filename, self.lineno).strip()

    def __str__(self) -> str:
        name = self.filename
        try:
            rel = os.path.relpath(name)
            if not rel.startswith(".."):
                name = rel
        except ValueError:  # different drive on Windows
            pass
        text = self.line
        return f"{name}:{self.lineno}" + (f": {text}" if text else "")


def user_location(skip_files: tuple[str, ...] = ()) -> Location | None:
    """The innermost stack frame outside attncomp and torch: where the user's code is."""
    lib = _library_dirs()
    frame = sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(lib) and fname not in skip_files and not fname.startswith("<frozen"):
            return Location(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return None


def function_location(fn) -> Location | None:
    """Where a user function is defined (its ``def`` line)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    return Location(code.co_filename, code.co_firstlineno)


def located(message: str, where: Location | None) -> str:
    """``message`` followed by the user's location, if one is known."""
    return f"{message}\n  at {where}" if where is not None else message
