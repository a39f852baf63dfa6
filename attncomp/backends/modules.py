"""Loading generated source as a real module."""

from __future__ import annotations

import sys


def load_module(source: str, name: str) -> dict:
    """Execute generated source as a real (importable) module; returns its namespace.
    torch.compile's guards and Triton look functions' modules up by name."""
    import hashlib
    import types

    name = f"{name}_{hashlib.sha1(source.encode()).hexdigest()[:12]}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = f"<{name}>"
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
        sys.modules[name] = module
    return module.__dict__
