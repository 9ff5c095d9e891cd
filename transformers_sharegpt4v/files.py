"""Small file helpers shared by the corpora and captioning code: one atomic write, one "inside a folder" rule.

Standard library only (no torch, no pyarrow), so any module can import it at module level.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "fsync_dir", "relative_inside"]


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder (so a rename in it is durable); a no-op where the platform does not support it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", *, sync_dir: bool = False, fsync: bool = True, **kwargs: Any
) -> Iterator[IO]:
    """Open a hidden temporary file beside `path` (`.NAME.PID.tmp`) for writing; when the block ends
    without error it is flushed, fsynced and `os.replace`d over `path` (atomic: readers see the old or the new
    file, never half of one). An error (or Ctrl-C) leaves any previous `path` untouched and removes the
    temporary file. `sync_dir` also fsyncs the folder after the rename; `fsync=False` skips the file's fsync
    (many small files that can be written again, e.g. exported images). Text mode defaults to UTF-8."""
    path = Path(path)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def relative_inside(path: str | os.PathLike, folder: str | os.PathLike) -> str | None:
    """`path` relative to `folder` (posix) when it lies strictly inside it, else None. Both are taken as
    written (made absolute, not resolved). The package's one "path inside the image root" rule: callers that
    need a path inside the root raise when this is None (there is no fallback to the file's base name)."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    if relative in (".", "..") or relative.startswith(".." + os.sep):
        return None
    return Path(relative).as_posix()
