"""Stream the records of a JSON list file (the LLaVA / ShareGPT4V corpus format) without loading it.

The corpora are one top-level JSON list of 1.2-1.5 GB. `json.load` would hold the whole text and every
record at once (several times the file size); here the file is read in chunks and each element is decoded
with the C scanner of `json.JSONDecoder.raw_decode`, so memory stays at one chunk plus one record.

A malformed element does not stop the stream: its extent is found by a small bracket/string scanner (run
only where `raw_decode` failed, i.e. at chunk boundaries and on bad records) and it is yielded as a
`MalformedRecord` with its index and, when it can be recovered, its id.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["JSONListReader", "MalformedRecord"]

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A complete string, the opening quote of an unterminated one, or a structural character.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{},]')
_ID = re.compile(r'"id"\s*:\s*("[^"\\]*(?:\\.[^"\\]*)*"|-?\d+)')
_DECODER = json.JSONDecoder()
# Where one record ends and the next begins (used only to recover from a record whose brackets never close).
_BOUNDARY = re.compile(r'[}\]]\s*(,)\s*\{\s*"(?:id|image|conversations)"\s*:')


@dataclass(frozen=True)
class MalformedRecord:
    """An element of the list that is not valid JSON: `error` says why, `id` is recovered when possible."""

    error: str
    id: str | None
    text: str


def _find_element_end(text: str, start: int) -> int | None:
    """Position of the `,` or `]` that ends the list element starting at `start`, or None when `text`
    ends first (more input is needed). Strings are skipped whole, so brackets inside them do not count."""
    depth = 0
    for match in _TOKEN.finditer(text, start):
        token = match.group()
        if token == '"':
            return None  # a string runs past the end of the buffer
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
        elif token in "]}":
            if depth == 0:
                return match.start()
            depth -= 1
        elif depth == 0:  # ","
            return match.start()
    return None


def _recover_id(text: str) -> str | None:
    match = _ID.search(text, 0, 100_000)
    if match is None:
        return None
    try:
        return str(json.loads(match.group(1)))
    except ValueError:
        return None


class JSONListReader:
    """Iterate over `(index, record)` for each element of the JSON list in `path`; a malformed element
    comes as `(index, MalformedRecord)`. `bytes_read` follows the progress through the file;
    `trailing_text` holds what followed the closing "]" if that was not only whitespace, `unterminated`
    tells that the file ended without the closing "]"."""

    def __init__(self, path: str | os.PathLike, chunk_size: int = 1 << 22, max_record_chars: int = 1 << 24) -> None:
        self.path = Path(path)
        self.chunk_size = chunk_size
        self.max_record_chars = max_record_chars
        self.bytes_read = 0
        self.trailing_text: str | None = None
        self.unterminated = False

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        with open(self.path, "rb") as handle:
            self._handle = handle
            self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
            self._buffer, self._pos, self._eof = "", 0, False
            yield from self._elements()

    def _refill(self, keep: int) -> int:
        """Drop the buffer before `keep` and append the next chunk; returns how far positions moved."""
        data = self._handle.read(self.chunk_size)
        self.bytes_read += len(data)
        self._eof = not data
        self._buffer = self._buffer[keep:] + self._decoder.decode(data, final=self._eof)
        self._pos -= keep
        return keep

    def _skip_whitespace(self, keep: int) -> int:
        """Move `_pos` past whitespace, reading more as needed (keeping the buffer from `keep` on);
        returns how far positions moved."""
        moved = 0
        while True:
            self._pos = _WHITESPACE.match(self._buffer, self._pos).end()
            if self._pos < len(self._buffer) or self._eof:
                return moved
            moved += self._refill(min(keep - moved, self._pos))

    def _elements(self) -> Iterator[tuple[int, Any]]:
        self._skip_whitespace(0)
        if self._pos >= len(self._buffer):
            raise UsageError(f"{self.path} is empty: expected a JSON list of records ([{{...}}, ...]).")
        if self._buffer[self._pos] != "[":
            raise UsageError(
                f"{self.path} is not a JSON list: it starts with {self._buffer[self._pos : self._pos + 20]!r} "
                "instead of '['. Give a LLaVA/ShareGPT4V corpus: one JSON list of records "
                '([{"id": ..., "image": ..., "conversations": [...]}, ...]).'
            )
        self._pos += 1
        index = 0
        while True:
            self._skip_whitespace(self._pos)
            if self._pos >= len(self._buffer):
                self.unterminated = True
                return
            if self._buffer[self._pos] == "]":  # end of the list (also after a trailing comma)
                break
            yield index, self._element()
            index += 1
            # _element() leaves _pos on the "," or "]" that ends the element, or at the end of the file.
            if self._pos >= len(self._buffer):
                return
            if self._buffer[self._pos] == "]":
                break
            self._pos += 1
        self._pos += 1
        self._skip_whitespace(self._pos)
        if self._pos < len(self._buffer):
            self.trailing_text = self._buffer[self._pos : self._pos + 80]

    def _element(self) -> Any:
        start = self._pos
        while True:
            try:
                record, end = _DECODER.raw_decode(self._buffer, start)
            except json.JSONDecodeError as error:
                message = f"{error.msg} (character {error.pos - start} of the record)"
            else:
                self._pos = end
                start -= self._skip_whitespace(start)
                if self._pos >= len(self._buffer):  # a valid last record, but the list is never closed
                    self.unterminated = True
                    return record
                if self._buffer[self._pos] in ",]":
                    return record
                message = f"unexpected text after the value: {self._buffer[self._pos : self._pos + 40]!r}"
            stop = _find_element_end(self._buffer, start)
            if stop is None and (self._eof or len(self._buffer) - start > self.max_record_chars):
                return self._resynchronise(start, message)
            if stop is not None:
                text = self._buffer[start:stop]
                self._pos = stop
                return MalformedRecord(message, _recover_id(text), text[:2000])
            self._pos = start
            start -= self._refill(start)

    def _resynchronise(self, start: int, message: str) -> MalformedRecord:
        """The brackets of a bad element never balance (e.g. a missing "}"): end it at the next place that
        looks like the boundary between two records, `}, {"id"`, so one bad record costs one record."""
        head = self._buffer[start : start + 2000]
        search_from = start + 1
        while True:
            match = _BOUNDARY.search(self._buffer, search_from)
            if match is not None:
                self._pos = match.start(1)
                return MalformedRecord(message, _recover_id(head), head)
            if self._eof:
                self._pos = len(self._buffer)
                return MalformedRecord(
                    f"{message}; the file ends inside this record (or its brackets never close)",
                    _recover_id(head),
                    head,
                )
            keep = max(len(self._buffer) - 200, search_from)  # a boundary may straddle two chunks
            self._pos = keep
            self._refill(keep)
            search_from = 0
