"""Lazy package attributes: heavy imports (torch, transformers, pyarrow) happen when a name is first used, so that
`sharegpt4v CMD --help` and the light modules of a package cost nothing to import."""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`: `names` maps each public name to the module (relative to
    `package`, e.g. ".engine" or "..degenerate") that defines it, imported on first use."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(names[name], package), name)

    return __getattr__
