"""lmms-eval on a CPU-only torch: treat a torchvision that cannot load as absent.

The distribution installs `sharegpt4v-torchvision-guard.pth`, which does this at interpreter start (see
`sharegpt4v_torchvision_guard`: PyPI's torchvision, which lmms-eval requires, links the CUDA torch and breaks
transformers' processors beside a CPU torch). `hide_broken_torchvision()` is the same check for processes that
skipped the `.pth` (`python -S`, an embedding interpreter): the `sharegpt4v` lmms-eval model and `sharegpt4v
eval` call it before they load a processor, and it drops transformers' cached answer to "is torchvision there".
"""

from __future__ import annotations

import sys

import sharegpt4v_torchvision_guard

__all__ = ["hide_broken_torchvision"]


def hide_broken_torchvision() -> bool:
    """Block `import torchvision` when its compiled ops need torch libraries the installed torch does not ship;
    True when torchvision is blocked (now or at start-up). Does nothing once torchvision has been imported."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"] is None
    if not sharegpt4v_torchvision_guard.hide_broken_torchvision():
        return False
    try:  # transformers caches its answer: forget one given before the block
        from transformers.utils import import_utils
    except ImportError:
        return True
    for name in ("is_torchvision_available", "is_torchvision_v2_available", "is_timm_available"):
        cached = getattr(import_utils, name, None)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
    return True
