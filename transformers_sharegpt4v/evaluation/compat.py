"""lmms-eval on a CPU-only torch: treat a torchvision that cannot load as absent.

lmms-eval requires `torchvision` (and `timm`, which requires it too), so `pip install lmms-eval` always
installs one. PyPI's Linux torchvision wheels are built against the CUDA torch: their `_C.so` links
`libtorch_cuda.so`, which a CPU build of torch does not have. Such a torchvision then raises `RuntimeError:
operator torchvision::nms does not exist` on import, and transformers, which only checks that the package is
there (`importlib.util.find_spec`), imports it from its processors, so `AutoProcessor` and every image
processor fail.

Neither ShareGPT4V nor the lmms-eval code paths it uses need torchvision (the processor is PIL + numpy).
`hide_broken_torchvision()` checks, without importing it, whether torchvision's compiled ops load beside the
installed torch; when they do not, it blocks the import (`sys.modules["torchvision"] = None`, Python's own way
to say "not installed": `find_spec` returns None and `import torchvision` raises ImportError), so transformers
takes its torchvision-free path. A torchvision that works is left alone. The `sharegpt4v` lmms-eval entry
point and `sharegpt4v eval` call it before anything imports transformers' processors.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import sys
from pathlib import Path

__all__ = ["hide_broken_torchvision", "torchvision_loads"]

logger = logging.getLogger(__name__)
_checked: bool | None = None


def torchvision_loads() -> bool | None:
    """Whether torchvision's compiled ops library loads with the installed torch; None when torchvision is not
    installed. Loads the library with the dynamic linker only: no torchvision module is imported."""
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):  # ValueError: sys.modules["torchvision"] is None or has no spec
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    libraries = [p for folder in spec.submodule_search_locations for p in Path(folder).glob("_C*.so")]
    if not libraries:  # a build without compiled ops (or not Linux): nothing can fail to link
        return True
    import torch  # noqa: F401  (torchvision's _C links torch's libraries: load them first, as torchvision does)

    try:
        ctypes.CDLL(str(libraries[0]), mode=ctypes.RTLD_GLOBAL)
    except OSError as error:
        logger.debug("torchvision's %s does not load: %s", libraries[0], error)
        return False
    return True


def hide_broken_torchvision() -> bool:
    """Block `import torchvision` when its compiled ops cannot load beside the installed torch (see the module
    docstring). True when it was blocked. Safe to call more than once; does nothing once torchvision has been
    imported."""
    global _checked
    if _checked is not None:
        return _checked
    if sys.modules.get("torchvision", False) is not False:  # imported already (or blocked by someone else)
        _checked = False
        return False
    _checked = torchvision_loads() is False
    if _checked:
        sys.modules["torchvision"] = None  # type: ignore[assignment]
        try:  # transformers caches the answer: forget one given before the block
            from transformers.utils import import_utils

            for name in ("is_torchvision_available", "is_torchvision_v2_available"):
                cached = getattr(import_utils, name, None)
                if hasattr(cached, "cache_clear"):
                    cached.cache_clear()
        except ImportError:
            pass
        logger.info(
            "torchvision is installed but cannot load with this torch (a CUDA build beside a CPU torch?); "
            "ShareGPT4V's evaluation runs without it."
        )
    return _checked
