"""One corpus record: the LLaVA/ShareGPT4V JSON form, its checks, and the TRL conversational form.

LLaVA form (docs/reference.md, "Corpora"):
    {"id": "...", "image": "coco/train2017/000000000009.jpg",
     "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}, ...]}
TRL form (what `datasets` rows hold):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "..."}]}, ...]

Each `<image>` placeholder becomes an image part in place and the newline that follows it is dropped (chat
templates put it back); `messages_to_conversations` inverts this, so a round trip gives the same values.
The one normalisation: a tag directly followed by text other than a newline comes back as `<image>\\n`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from ..tokenization_sharegpt4v import IMAGE_TOKEN

__all__ = [
    "IMAGE_TAG",
    "SKIP_REASONS",
    "InvalidRecord",
    "Record",
    "check_record",
    "conversations_to_messages",
    "messages_to_conversations",
    "parse_record",
    "source_of",
]

IMAGE_TAG = IMAGE_TOKEN  # the placeholder of the JSON records: the processor's image token
ROLE_OF = {"human": "user", "gpt": "assistant"}
FROM_OF = {role: speaker for speaker, role in ROLE_OF.items()}

# reason -> what it means (written into the dataset card and report.json)
SKIP_REASONS: dict[str, str] = {
    "malformed_json": "the list element is not valid JSON",
    "malformed_record": "not an object with a string/int `id`, an optional `image` (path or list of paths) "
    "and `conversations` as a list of {from, value} objects with string values",
    "duplicate_id": "an earlier record has the same id (only the first record of an id is considered)",
    "missing_turns": "`conversations` is missing or empty, or a human turn has neither text nor image",
    "first_turn_not_human": "the first turn is not from `human`",
    "roles_not_alternating": "turns do not alternate human, gpt, human, gpt, ... (or use another role)",
    "empty_answer": "a gpt turn is empty, or the last human turn has no answer",
    "image_tag_mismatch": "the number of `<image>` tags differs from the number of images",
    "absolute_image_path": "the image path is absolute (it must be relative to the image root)",
    "image_path_escapes_root": "the image path leaves the image root through `..`",
    "missing_image": "the image file does not exist under the image root",
    "unreadable_image": "the image file cannot be opened as an image",
    "truncated_image": "the image file opens but does not decode fully (truncated or corrupt data)",
}


class InvalidRecord(ValueError):
    """A record that is skipped: `reason` is a key of SKIP_REASONS, `detail` says what exactly."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Record:
    """A structurally sound record: `images` are the paths as written in the JSON (relative to the root)."""

    id: str
    images: list[str]
    conversations: list[dict[str, str]]


def parse_record(obj: Any) -> Record:
    """Check the shape of a decoded JSON element; raises InvalidRecord("malformed_record", ...)."""
    if not isinstance(obj, dict):
        raise InvalidRecord("malformed_record", f"expected an object, got {type(obj).__name__}")
    record_id = obj.get("id")
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)) or record_id == "":
        raise InvalidRecord("malformed_record", f"`id` must be a non-empty string or an integer, got {record_id!r}")
    image = obj.get("image")
    if image is None:
        images = []
    elif isinstance(image, str) and image:
        images = [image]
    elif isinstance(image, list) and all(isinstance(path, str) and path for path in image):
        images = list(image)
    else:
        raise InvalidRecord("malformed_record", f"`image` must be a path or a list of paths, got {image!r:.80}")
    turns = obj.get("conversations")
    if turns is not None and not isinstance(turns, list):
        raise InvalidRecord("malformed_record", f"`conversations` must be a list, got {type(turns).__name__}")
    for number, turn in enumerate(turns or []):
        if (
            not isinstance(turn, dict)
            or not isinstance(turn.get("from"), str)
            or not isinstance(turn.get("value"), str)
        ):
            raise InvalidRecord("malformed_record", f"turn {number} is not an object with string `from` and `value`")
    return Record(str(record_id), images, turns or [])


def check_record(record: Record) -> None:
    """The content rules of a training conversation and of its image paths; raises InvalidRecord."""
    turns = record.conversations
    if not turns:
        raise InvalidRecord("missing_turns", "`conversations` is missing or empty")
    if turns[0]["from"] != "human":
        raise InvalidRecord("first_turn_not_human", f"the first turn is from {turns[0]['from']!r}")
    for number, turn in enumerate(turns):
        expected = "human" if number % 2 == 0 else "gpt"
        if turn["from"] != expected:
            raise InvalidRecord(
                "roles_not_alternating", f"turn {number} is from {turn['from']!r}, expected {expected!r}"
            )
        value = turn["value"]
        if expected == "human" and not value.strip():
            raise InvalidRecord("missing_turns", f"human turn {number} is empty")
        if expected == "gpt" and not value.replace(IMAGE_TAG, "").strip():
            raise InvalidRecord("empty_answer", f"gpt turn {number} is empty")
    if len(turns) % 2:
        raise InvalidRecord("empty_answer", f"the last human turn ({len(turns) - 1}) has no answer")
    tags = sum(turn["value"].count(IMAGE_TAG) for turn in turns)
    if tags != len(record.images):
        raise InvalidRecord("image_tag_mismatch", f"{tags} `<image>` tags for {len(record.images)} images")
    for path in record.images:
        if posixpath.isabs(path) or path.startswith("\\") or (len(path) > 1 and path[1] == ":"):
            raise InvalidRecord("absolute_image_path", path)
        normalised = posixpath.normpath(path.replace("\\", "/"))
        if normalised == ".." or normalised.startswith("../"):
            raise InvalidRecord("image_path_escapes_root", path)


def source_of(images: list[str]) -> str:
    """The top folder of the first image (coco, sam, llava, wikiart, ...); "text" for text-only records."""
    if not images:
        return "text"
    return posixpath.normpath(images[0].replace("\\", "/")).split("/", 1)[0]


def _split_tags(value: str) -> list[dict[str, str | None]]:
    if IMAGE_TAG not in value:  # most turns: one text part
        return [{"type": "text", "text": value}]
    pieces = value.split(IMAGE_TAG)
    parts: list[dict[str, str | None]] = []
    if pieces[0]:
        parts.append({"type": "text", "text": pieces[0]})
    last = len(pieces) - 1
    for number, piece in enumerate(pieces[1:], 1):
        parts.append({"type": "image", "text": None})
        if piece.startswith("\n"):
            piece = piece[1:]
            if not piece and number == last:  # "...<image>\n" at the very end: keep the newline's place
                parts.append({"type": "text", "text": ""})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def conversations_to_messages(conversations: list[dict[str, str]]) -> list[dict[str, Any]]:
    """LLaVA turns -> TRL conversational messages (`<image>` tags become image parts, in place)."""
    return [{"role": ROLE_OF[turn["from"]], "content": _split_tags(turn["value"])} for turn in conversations]


def messages_to_conversations(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """TRL conversational messages -> LLaVA turns: the inverse of `conversations_to_messages`."""
    conversations = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            value = content
        else:
            pieces = []
            for number, part in enumerate(content):
                if part["type"] == "image":
                    pieces.append(IMAGE_TAG + ("\n" if number + 1 < len(content) else ""))
                else:
                    pieces.append(part["text"] or "")
            value = "".join(pieces)
        if message["role"] not in FROM_OF:
            raise ValueError(f"role {message['role']!r} has no LLaVA equivalent; expected one of {sorted(FROM_OF)}")
        conversations.append({"from": FROM_OF[message["role"]], "value": value})
    return conversations
