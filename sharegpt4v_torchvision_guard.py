"""Run at interpreter start (`sharegpt4v-torchvision-guard.pth`, installed by the `transformers-sharegpt4v`
distribution): hide a torchvision that cannot load beside the installed torch, before anything imports it.

lmms-eval requires torchvision (and timm, which requires it too), so `pip install "transformers-sharegpt4v[eval]"`
always brings one, and PyPI's Linux torchvision wheels are built against the CUDA torch: their `_C.so` links
`libtorch_cuda.so`, which a CPU build of torch does not have. Such a torchvision raises `RuntimeError: operator
torchvision::nms does not exist` on import, and transformers, which only checks that the package is there
(`importlib.util.find_spec`), imports it from `image_utils`, so `python -m lmms_eval`, `AutoProcessor` and every
image processor fail before any plugin code could run.

The check reads the ELF header of torchvision's `_C*.so` (no import, about a millisecond): when it needs a torch
library (`libtorch*`, `libc10*`) that the installed torch does not ship, `sys.modules["torchvision"] = None`,
Python's own way to say "not installed": `find_spec` returns None, `import torchvision` raises ImportError, and
transformers takes its torchvision-free path (PIL image processors). A torchvision that matches its torch is left
alone, as is everything when torchvision or torch is absent. `SHAREGPT4V_KEEP_TORCHVISION=1` turns it off.
timm, which cannot be imported without torchvision, is hidden with it (`NEEDS_TORCHVISION`).
"""

from __future__ import annotations

import os
import struct
import sys
from importlib.machinery import PathFinder

__all__ = ["NEEDS_TORCHVISION", "needed_libraries", "torchvision_links", "hide_broken_torchvision"]

# Packages that import torchvision when they are imported, hidden with it. timm (which lmms-eval requires) does
# (`timm.layers`); accelerate's CLI imports timm whenever `find_spec` finds it, so with timm visible and
# torchvision hidden `accelerate launch` died with "No module named 'torchvision.ops'".
NEEDS_TORCHVISION = ("timm",)


def needed_libraries(path: str | os.PathLike) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF shared library ([] for anything else)."""
    with open(path, "rb") as handle:
        header = handle.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return []
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
        loads, dynamic = [], None
        for i in range(phnum):
            p_type, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
            if p_type == 1:
                loads.append((vaddr, offset, filesz))
            elif p_type == 2:
                dynamic = (offset, filesz)
        if dynamic is None:
            return []
        handle.seek(dynamic[0])
        entries = handle.read(dynamic[1])
        needed, strtab = [], None
        for i in range(0, len(entries) - 15, 16):
            tag, value = struct.unpack_from("<qQ", entries, i)
            if tag == 0:
                break
            if tag == 1:
                needed.append(value)
            elif tag == 5:
                strtab = value
        if strtab is None:
            return []
        base = next((offset + strtab - vaddr for vaddr, offset, size in loads if vaddr <= strtab < vaddr + size), None)
        if base is None:
            return []
        names = []
        for name_offset in needed:
            handle.seek(base + name_offset)
            names.append(handle.read(256).split(b"\0", 1)[0].decode("ascii", "replace"))
        return names


def torchvision_links() -> bool | None:
    """Whether torchvision's compiled ops would find every torch library they need in the installed torch; None
    when torchvision or torch is not installed, or the library is not a Linux ELF file."""
    vision, torch = PathFinder.find_spec("torchvision"), PathFinder.find_spec("torch")
    if (
        vision is None
        or torch is None
        or not vision.submodule_search_locations
        or not torch.submodule_search_locations
    ):
        return None
    libraries = [
        os.path.join(folder, name)
        for folder in vision.submodule_search_locations
        for name in _listdir(folder)
        if name.startswith("_C") and name.endswith(".so")
    ]
    if not libraries:
        return None
    shipped = {name for folder in torch.submodule_search_locations for name in _listdir(os.path.join(folder, "lib"))}
    needed = [name for name in needed_libraries(libraries[0]) if name.startswith(("libtorch", "libc10"))]
    if not needed:
        return None
    return all(name in shipped for name in needed)


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def hide_broken_torchvision() -> bool:
    """Block `import torchvision` when it cannot load (see the module docstring); True when blocked."""
    if os.environ.get("SHAREGPT4V_KEEP_TORCHVISION") or "torchvision" in sys.modules:
        return False
    try:
        broken = torchvision_links() is False
    except (OSError, struct.error, ValueError):
        return False
    if broken:
        sys.modules["torchvision"] = None  # type: ignore[assignment]
        for name in NEEDS_TORCHVISION:  # cannot import either: hidden too, or `find_spec` still finds them
            if name not in sys.modules:
                sys.modules[name] = None  # type: ignore[assignment]
    return broken
