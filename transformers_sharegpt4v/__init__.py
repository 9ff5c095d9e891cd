"""transformers-sharegpt4v: ShareGPT4V vision-language models on the Hugging Face stack.

Importing this package registers ShareGPT4V with transformers' Auto classes, so that
`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`, `AutoModelForImageTextToText`,
`AutoImageProcessor` and `AutoProcessor` load plugin checkpoints without `trust_remote_code`.

The import itself stays light (no torch, no transformers), so that `sharegpt4v --help` and the `data`
commands start at once: the public classes load on first use (PEP 562), and the registration runs as soon as
transformers is there: now if it is already imported, else right after `import transformers` completes,
before any Auto class can be used.
"""

from __future__ import annotations

import importlib.abc
import sys
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_NAMES = {
    "ShareGPT4VConfig": "configuration_sharegpt4v",
    "ShareGPT4VImageProcessor": "image_processing_sharegpt4v",
    "ShareGPT4VForCausalLM": "modeling_sharegpt4v",
    "ShareGPT4VModel": "modeling_sharegpt4v",
    "ShareGPT4VPreTrainedModel": "modeling_sharegpt4v",
    "default_attn_implementation": "modeling_sharegpt4v",
    "ShareGPT4VProcessor": "processing_sharegpt4v",
}

__all__ = sorted(_NAMES)

# The remote-code unit (README.md, "Architecture"): copied into every plugin checkpoint, so that
# `trust_remote_code=True` loads it without the plugin; they import only each other (`from .module import X`).
REMOTE_CODE_MODULES = (
    "configuration_sharegpt4v",
    "modeling_sharegpt4v",
    "image_processing_sharegpt4v",
    "tokenization_sharegpt4v",
    "processing_sharegpt4v",
)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))


def register_auto_classes() -> None:
    """Register the ShareGPT4V classes with transformers' Auto classes (idempotent; imports torch)."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
    )

    from .configuration_sharegpt4v import ShareGPT4VConfig
    from .image_processing_sharegpt4v import ShareGPT4VImageProcessor
    from .modeling_sharegpt4v import ShareGPT4VForCausalLM, ShareGPT4VModel
    from .processing_sharegpt4v import ShareGPT4VProcessor

    AutoConfig.register(ShareGPT4VConfig.model_type, ShareGPT4VConfig, exist_ok=True)
    AutoModel.register(ShareGPT4VConfig, ShareGPT4VModel, exist_ok=True)
    AutoModelForCausalLM.register(ShareGPT4VConfig, ShareGPT4VForCausalLM, exist_ok=True)
    AutoModelForImageTextToText.register(ShareGPT4VConfig, ShareGPT4VForCausalLM, exist_ok=True)
    AutoImageProcessor.register(
        ShareGPT4VConfig, image_processor_classes={"pil": ShareGPT4VImageProcessor}, exist_ok=True
    )
    AutoProcessor.register(ShareGPT4VConfig, ShareGPT4VProcessor, exist_ok=True)


# Registration imports the remote-code unit, and nothing else of the package.
_UNIT = tuple(f"{__name__}.{module}" for module in REMOTE_CODE_MODULES)
_state = {"registered": False, "registering": False}


def _initializing(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _register_when_ready(just_loaded: str) -> None:
    """Register once transformers is imported and no module of the unit is still half-way through its own
    import (the first import of transformers may come from inside one of them: the unit module whose import
    finishes last then registers)."""
    if _state["registered"] or _state["registering"] or "transformers" not in sys.modules:
        return
    if any(_initializing(name) for name in _UNIT if name != just_loaded):
        return
    _state["registering"] = True
    try:
        register_auto_classes()
        _state["registered"] = True
        _remove_hook()
    finally:
        _state["registering"] = False


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for `transformers` and the modules of the unit it hands out the real spec with a
    loader that runs the module, then `_register_when_ready`. It leaves `sys.meta_path` once registered."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "transformers" and fullname not in _UNIT:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # the module sees its own loader (importlib.resources, reloading, ...), not this wrapper
        module.__spec__.loader = module.__loader__ = self.loader
        self.loader.exec_module(module)
        _register_when_ready(module.__spec__.name)


_HOOK = _RegisterAfterImport()


def _remove_hook() -> None:
    while _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


if "transformers" in sys.modules:
    register_auto_classes()
    _state["registered"] = True
else:
    sys.meta_path.insert(0, _HOOK)
