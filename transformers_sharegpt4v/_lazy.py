"""Lazy package attributes: heavy imports (torch, transformers, pyarrow) happen when a name is first used, so that
`sharegpt4v CMD --help` and the light modules of a package cost nothing to import."""

import sys
from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any


def names_by_module(modules: dict[str, Iterable[str]]) -> dict[str, str]:
    """`{name: module}` from `{module: names it defines}` (modules relative to the package, e.g. ".build")."""
    return {name: module for module, names in modules.items() for name in names}


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`: `names` maps each public name to the module (relative to
    `package`, e.g. ".engine" or "..degenerate") that defines it, imported on first use."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(names[name], package), name)

    return __getattr__


def lazy_dir(package: str, names: dict[str, str]) -> Callable[[], list[str]]:
    """A module-level `__dir__` for `package`: its loaded attributes and the lazy `names`."""

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __dir__
