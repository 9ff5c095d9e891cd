"""Image file checks in parallel worker processes, cached per distinct path.

A check opens the file with PIL and decodes all of its data (`Image.load`), which is what catches truncated
files: `Image.open` only reads the header. Decoding is the expensive part of building a corpus with a million
images, so it runs in worker processes, in batches, and each distinct path is checked once.

The workers are `python _image_worker.py` subprocesses talking JSON lines over pipes, rather than a
`multiprocessing` pool: a pool's workers are forked from (or re-import) this process, which carries torch
and transformers, so each would show ~350 MB; these start bare, with PIL only. A worker that dies (a decoder
crash on a hostile file) is replaced, and the files it held are re-checked one by one, in a process of
their own, so the one that kills the decoder is reported as unreadable instead of stopping the build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Iterable

from ._image_worker import check_image_file

__all__ = ["ImageChecker", "check_image_file"]

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_image_worker.py")
# (reason, detail) for a bad file, None for a good one
CheckResult = tuple[str, str] | None
# Batches in flight per worker. With at most 32 paths a batch and results of at most ~400 bytes, the unread
# results stay far below a pipe's 64 kB, so a worker never blocks writing while we block writing to it.
MAX_IN_FLIGHT = 4
_QUEUED = object()  # cache entry of a path waiting for a full batch


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
        )
        self.in_flight: deque[list[str]] = deque()

    def send(self, paths: list[str], full_paths: list[str]) -> None:
        self.in_flight.append(paths)
        try:
            self.process.stdin.write(json.dumps(full_paths) + "\n")
            self.process.stdin.flush()
        except OSError:  # the worker is dead: `receive` sees the end of its output and the batch is redone
            pass

    def receive(self) -> tuple[list[str], list[CheckResult]] | None:
        """(paths, results) of the oldest batch in flight, or None if the worker died."""
        line = self.process.stdout.readline()
        if not line:
            return None
        results = [None if result is None else tuple(result) for result in json.loads(line)]
        return self.in_flight.popleft(), results

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        self.process.stdout.close()
        self.process.wait()


def _check_alone(full_path: str) -> CheckResult:
    """Check one file in a process of its own; a crash there is the file's fault."""
    done = subprocess.run([sys.executable, WORKER_SCRIPT, full_path], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        return "unreadable_image", f"{full_path}: the image decoder crashed on it (exit code {done.returncode})"
    result = json.loads(done.stdout)[0]
    return None if result is None else tuple(result)


class ImageChecker:
    """Check image files under `root` in `num_workers` processes (0: in this process).

    `submit(paths)` queues the paths not seen before (relative to `root`) in batches; `result(path)` waits
    for and returns the check of one path. Results stay cached for the life of the checker.
    """

    def __init__(self, root: str | os.PathLike, num_workers: int | None = None, batch_size: int = 32) -> None:
        self.root = os.path.abspath(root)
        self.num_workers = (os.cpu_count() or 1) if num_workers is None else num_workers
        self.batch_size = batch_size
        self.files_checked = 0
        self.workers_restarted = 0
        self._cache: dict[str, object] = {}  # path -> CheckResult | the _Worker holding it | _QUEUED
        self._queued: list[str] = []
        self._workers = [_Worker() for _ in range(self.num_workers)]

    def full_path(self, path: str) -> str:
        return os.path.join(self.root, path)

    def submit(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path not in self._cache:
                self._cache[path] = _QUEUED
                self._queued.append(path)
                if len(self._queued) >= self.batch_size:
                    self._send()

    def _send(self) -> None:
        batch, self._queued = self._queued, []
        if not batch:
            return
        if not self._workers:
            for path in batch:
                self._store(path, check_image_file(self.full_path(path)))
            return
        while True:
            worker = min(self._workers, key=lambda w: len(w.in_flight))
            if len(worker.in_flight) < MAX_IN_FLIGHT:
                break
            self._receive(worker)
        worker.send(batch, [self.full_path(path) for path in batch])
        for path in batch:
            self._cache[path] = worker

    def _store(self, path: str, result: CheckResult) -> None:
        self._cache[path] = result
        self.files_checked += 1

    def _receive(self, worker: _Worker) -> None:
        """Read the oldest batch of `worker`; if it died, replace it and re-check its files one by one."""
        received = worker.receive()
        if received is not None:
            for path, result in zip(*received, strict=True):
                self._store(path, result)
            return
        lost = [path for batch in worker.in_flight for path in batch]
        worker.close()
        self._workers[self._workers.index(worker)] = _Worker()
        self.workers_restarted += 1
        for path in lost:
            self._store(path, _check_alone(self.full_path(path)))

    def result(self, path: str) -> CheckResult:
        if path not in self._cache:
            self.submit([path])
        if self._cache[path] is _QUEUED:
            self._send()
        while isinstance(self._cache[path], _Worker):
            self._receive(self._cache[path])
        return self._cache[path]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []

    def __enter__(self) -> ImageChecker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
