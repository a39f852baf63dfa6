"""Resolving a VARIANT argument: a built-in name or ``path/to/file.py[:name]``.

In a file, ``name`` may be a Program, a FlexAttention mask function (4 arguments), a
score function (5 arguments), or a factory returning a Program (``--param`` values are
its keyword arguments). Without ``:name`` the file must define exactly one Program.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass

from ..errors import AttncompError, traceback_location
from ..ir import attention
from ..ir.program import Program
from .registry import REGISTRY, Variant


@dataclass
class Loaded:
    program: Program
    variant: Variant | None  # the registry entry, for example tensors and sizes
    arguments: dict          # factory arguments used (built-ins and file factories)


def parse_value(text: str):
    """A --param value: Python literal (``3``, ``0.5``, ``(12, 12)``, ``True``), ``12,12``
    as a tuple, or else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if "," in text:
            return tuple(parse_value(x.strip()) for x in text.split(",") if x.strip())
        return text


def _import_file(path: str):
    if not os.path.exists(path):
        raise AttncompError(f"no such file: {path}")
    name = "attncomp_user_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except AttncompError:
        raise
    except Exception as err:
        raise AttncompError(f"{path}: importing it failed: {type(err).__name__}: {err}",
                            location=traceback_location(err.__traceback__, inside=path)) from None
    return module


def _from_object(obj, name: str, params: dict, path: str) -> Loaded:
    if isinstance(obj, Program):
        return Loaded(obj.with_params(**params) if params else obj, None, {})
    if not callable(obj):
        raise AttncompError(f"{path}:{name} is a {type(obj).__name__}, not a Program, mask/score function or factory")
    try:
        positional = [p for p in inspect.signature(obj).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        positional = []
    if len(positional) in (4, 5) and not params:
        role = "mask" if len(positional) == 4 else "score"
        return Loaded(attention(**{role: obj}, name=name), None, {})
    result = obj(**params)
    if not isinstance(result, Program):
        raise AttncompError(f"{path}:{name}(...) returned {type(result).__name__}, not a Program")
    return Loaded(result, None, dict(params))


def load_variant(spec: str, params: dict | None = None) -> Loaded:
    """The Program named by ``spec`` (built-in name or ``file.py[:name]``).

    >>> load_variant("sliding_window", {"window": 8}).program.params["window"]
    8
    """
    params = dict(params or {})
    if spec in REGISTRY:
        variant = REGISTRY[spec]
        return Loaded(variant.build(**params), variant, variant.arguments(**params))
    path, _, name = spec.partition(":")
    if not path.endswith(".py"):
        close = [n for n in REGISTRY if spec in n or n in spec]
        hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
        raise AttncompError(f"unknown variant {spec!r}{hint}; `attncomp list` shows the built-in ones, "
                            "or give path/to/file.py[:name]")
    module = _import_file(path)
    if name:
        if not hasattr(module, name):
            raise AttncompError(f"{path} has no {name!r}")
        return _from_object(getattr(module, name), name, params, path)
    programs = {k: v for k, v in vars(module).items() if isinstance(v, Program)}
    if len(programs) != 1:
        found = ", ".join(programs) or "none"
        raise AttncompError(f"{path} defines {len(programs)} Programs ({found}); name one with {path}:NAME")
    key, program = next(iter(programs.items()))
    return _from_object(program, key, params, path)
