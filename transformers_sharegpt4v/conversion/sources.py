"""Sources: a local folder or a Hub repo id, its config.json, and which of the three layouts it is."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import HfApi, snapshot_download

from ..errors import UsageError

SourceFormat = Literal["original", "llava-hf", "sharegpt4v"]


def resolve_checkpoint(name_or_path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """A local folder, or the snapshot folder of a Hub repo id (offline: only what is already cached)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UsageError(f"{what} {str(name_or_path)!r} is a file; pass the checkpoint FOLDER (with config.json).")
    name = str(name_or_path)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name) or name.startswith((".", "/")):
        raise UsageError(f"{what} {name!r} is neither an existing folder nor a Hub repo id (owner/name).")

    # Only what a conversion reads: no TF/Flax/ONNX weights, and no pickles when safetensors exist
    # (openai/clip-vit-large-patch14-336 ships both).
    ignore = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "flax_*", "tf_*", "*.pt", "*.pth", "*.gguf"]
    try:
        files = HfApi().list_repo_files(name)
    except Exception:  # offline or unreachable: snapshot_download below says so (or uses the cache)
        files = []
    if any(f.endswith(".safetensors") for f in files):
        ignore.append("*.bin")
    try:
        return Path(snapshot_download(name, ignore_patterns=ignore))
    except Exception as error:  # offline cache miss, unknown repo, network error: all mean "not available"
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        hint = (
            "HF_HUB_OFFLINE is set, so only repos already in the local cache resolve"
            if offline
            else "the Hub could not be reached or the repo does not exist"
        )
        raise UsageError(
            f"{what} {name!r} is not a local folder and could not be fetched from the Hub: {hint} "
            f"({type(error).__name__}: {error}). Download it first (`hf download {name} --local-dir DIR`) and "
            f"pass the folder."
        ) from error


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise UsageError(f"{folder} has no config.json: it is not a transformers checkpoint folder.")
    return json.loads(path.read_text(encoding="utf-8"))


def detect_source_format(config: dict[str, Any], folder: Path | str = "SRC") -> SourceFormat:
    """Tell an original ShareGPT4V/LLaVA-1.5, a llava-hf and a plugin checkpoint apart by their config."""
    model_type = config.get("model_type")
    if model_type == "sharegpt4v":
        return "sharegpt4v"
    if model_type in ("share4v", "llava", "llava_llama") and any(k.startswith("mm_") for k in config):
        return "original"
    if model_type == "llava" and "text_config" in config:
        return "llava-hf"
    raise UsageError(
        f"{folder}/config.json: model_type {model_type!r} is not a checkpoint this converter knows. Expected a "
        "released ShareGPT4V/LLaVA-1.5 checkpoint (model_type 'share4v' or 'llava' with mm_* fields), a llava-hf "
        "checkpoint (model_type 'llava' with text_config/vision_config) or a plugin checkpoint ('sharegpt4v')."
    )
