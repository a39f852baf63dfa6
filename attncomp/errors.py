"""Errors raised for user mistakes, located in the user's own code.

Every mistake a user can make (a mask that uses Python ``and`` on symbolic indices, a
cascade that reads an undefined tensor, a tensor of the wrong shape at call time) raises
an :class:`AttncompError`. Its fields say what went wrong (``message``), in which variant
(``variant``), what to do instead (``hint``) and where in the user's source
(``location``); ``str(err)`` formats them, and code that needs a part reads the field.

The raise site knows the problem; the context is added at the boundary between the
user's code and attncomp, as JAX and einops do: tracing a user function, parsing a
cascade, and the public entry points (:func:`api_boundary`). The boundary also drops
attncomp's own frames from the traceback, so what a user sees starts and ends in their
code.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import os
import sys
import types
from dataclasses import dataclass

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _library_dirs() -> tuple[str, ...]:
    dirs = [_PACKAGE_DIR + os.sep]
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "__file__", None):
        dirs.append(os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)
    return tuple(dirs)


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


class AttncompError(Exception):
    """A mistake in the user's variant, cascade text or call, explained in user terms.

    ``exprs`` are expressions the message shows, one per ``{}`` in it, printed by ``show``
    (``str`` unless a boundary chose the user's names, e.g. ``q_idx`` while tracing).

    >>> err = AttncompError("index 1 of doc is {}", variant="docs", hint="Clamp it", exprs=("m + 1",))
    >>> print(err.at(Location("masks.py", 3)))
    docs: index 1 of doc is m + 1
      hint: Clamp it
      at masks.py:3
    >>> err.message, err.variant, err.location.lineno
    ('index 1 of doc is {}', 'docs', 3)
    """

    def __init__(self, message: str, *, location: Location | None = None, variant: str | None = None,
                 hint: str | None = None, exprs: tuple = ()):
        super().__init__(message)
        self.message, self.location, self.variant, self.hint, self.exprs = message, location, variant, hint, exprs
        self.show = str

    def at(self, location: Location | None = None, *, variant: str | None = None, show=None) -> AttncompError:
        """Add context the raise site did not have; what is already set stays (the innermost
        boundary knows best). Returns the error itself, to ``raise err.at(...)``."""
        self.location = self.location or location
        self.variant = self.variant or variant
        if show is not None and self.show is str:
            self.show = show
        return self

    @property
    def text(self) -> str:
        """The message with its expressions printed."""
        return self.message.format(*map(self.show, self.exprs)) if self.exprs else self.message

    @property
    def summary(self) -> str:
        """``variant: text``: what went wrong, without hint or location."""
        return f"{self.variant}: {self.text}" if self.variant else self.text

    def __str__(self) -> str:
        hint = f"\n  hint: {self.hint}" if self.hint else ""
        where = f"\n  at {self.location}" if self.location else ""
        return self.summary + hint + where


class TraceError(AttncompError):
    """A mask or score function could not be traced into the IR."""


class CascadeError(AttncompError):
    """A cascade (text or Program) is malformed: syntax, undefined names, index letters."""


class ShapeError(AttncompError):
    """Tensors given at call time do not fit the Program (rank, size, dtype, missing)."""


class UnsupportedError(AttncompError):
    """A backend cannot run this Program; the message says which backend can and why."""


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


def traceback_location(tb, inside: str | None = None) -> Location | None:
    """The innermost frame of traceback ``tb`` in the user's code (with ``inside``: in that
    file): the line of a user function that raised while attncomp called it."""
    lib, where = _library_dirs(), None
    while tb is not None:
        fname = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if (fname == os.path.abspath(inside)) if inside else not fname.startswith(lib):
            where = Location(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def user_frames(tb):
    """Traceback ``tb`` without attncomp's and torch's frames."""
    lib, kept = _library_dirs(), []
    while tb is not None:
        if not os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(lib):
            kept.append(tb)
        tb = tb.tb_next
    out = None
    for entry in reversed(kept):
        out = types.TracebackType(out, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return out


def _usage_error(fn, args, kwargs) -> AttncompError | None:
    """An AttncompError if ``fn(*args, **kwargs)`` does not fit ``fn``'s signature (a
    misspelled keyword, a missing argument): checked only after the call raised TypeError,
    so a correct call pays nothing."""
    try:
        signature = inspect.signature(fn)
        signature.bind(*args, **kwargs)
    except TypeError as err:
        name = getattr(fn, "__qualname__", fn.__name__)
        return AttncompError(f"{name}(): {err}", hint=f"the signature is {fn.__name__}{signature}")
    except ValueError:  # no signature to check against
        return None
    return None


def api_boundary(fn):
    """Make ``fn`` a public entry point: an AttncompError leaving it is located at the
    user's call (unless it already has a location) and carries only the user's frames.

    A call that does not fit ``fn``'s signature is an AttncompError too, not Python's
    TypeError. The error is re-raised with a bare ``raise``, which, unlike ``raise err``, adds no
    frame of this wrapper to the traceback.
    """
    @functools.wraps(fn)
    def entry_point(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MemoryError:
            raise AttncompError(f"{fn.__name__}: the problem needs more memory than this machine has",
                                hint="Use smaller sizes (lengths, batch, heads)").at(user_location()) from None
        except TypeError:
            usage = _usage_error(fn, args, kwargs)
            if usage is None:
                raise
            raise usage.at(user_location()).with_traceback(None) from None
        except AttncompError as err:
            err.at(user_location())
            err.with_traceback(user_frames(err.__traceback__))
            err.__cause__, err.__suppress_context__ = None, True  # the internal chain is attncomp's
            raise
    return entry_point
