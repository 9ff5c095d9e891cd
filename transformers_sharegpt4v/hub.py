"""Publish checkpoints on the Hugging Face Hub: model cards and `sharegpt4v push DST REPO_ID`.

A plugin checkpoint is self-contained: weights, config with `auto_map`, the remote-code files, the processor
(tokenizer, image processor, chat template) and a model card telling users to load it with
`trust_remote_code=True`. `push_checkpoint` checks that before uploading (every code file an `auto_map` entry
names, and the files those import, must be in the folder: `remote_code_files`), writes the card if the folder
has none, and uploads the folder with `huggingface_hub` (so `HF_ENDPOINT`, `HF_TOKEN` etc. apply as usual).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import REMOTE_CODE_MODULES
from .arguments import positional
from .errors import MissingFileError, UsageError, looks_like_hub_id
from .files import atomic_write

WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin")

# The lines both usage examples share: one image, the prompt through the chat template, greedy decoding.
_GENERATE_EXAMPLE = """\
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Describe this image in detail."}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=Image.open("photo.jpg"), text=prompt, return_tensors="pt").to(model.device)
output = model.generate(**inputs, max_new_tokens=512, do_sample=False)
print(processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```"""

PLUGIN_USAGE = (
    """\
```python
import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoProcessor

repo = "{repo_id}"
model = AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True, dtype=torch.bfloat16, device_map="auto")
processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)

"""
    + _GENERATE_EXAMPLE
    + """

`trust_remote_code=True` runs the model code stored in this repository ({code_files}); read them first.
With the plugin installed (`pip install transformers-sharegpt4v`, then `import transformers_sharegpt4v`)
the same classes load without remote code."""
)

LLAVA_USAGE = (
    """\
```python
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

model = LlavaForConditionalGeneration.from_pretrained("{repo_id}", dtype="auto", device_map="auto")
processor = AutoProcessor.from_pretrained("{repo_id}")

"""
    + _GENERATE_EXAMPLE
    + """

The chat template stored here (`vicuna_v1_llava_hf`) renders the vicuna_v1 prompt so that the processor's
whole-string tokenization gives the token ids ShareGPT4V was trained on: it has no BOS (the tokenizer adds it)
and a space after each `<image>` and after each `</s>` that stands for SentencePiece's per-piece prefix. Do not
add BOS to the text yourself.

Serve it with vLLM (`vllm serve {repo_id}`) or SGLang (`python -m sglang.launch_server --model-path {repo_id}`):
both read the llava-hf layout, this chat template and the image processor, which pads to a square with the mean
colour (`do_pad=True`) as the original ShareGPT4V inference code does. vLLM's chat completions endpoint does not
add BOS by default: send `"add_special_tokens": true` with each request."""
)


def read_license(folder: str | os.PathLike) -> str | None:
    """The `license` of the model card in `folder` (README.md front matter), if any."""
    from huggingface_hub import ModelCard

    path = Path(folder) / "README.md"
    if not path.is_file():
        return None
    try:
        return ModelCard.load(path).data.license
    except Exception:  # a README without (valid) front matter has no license field
        return None


def write_model_card(
    folder: str | os.PathLike,
    to: str = "sharegpt4v",
    provenance: dict[str, Any] | None = None,
    config: Any = None,
    repo_id: str | None = None,
    license: str | None = None,
    name: str | None = None,
) -> Path:
    """Write README.md (a Hub model card) into a checkpoint folder and return its path.

    `provenance` records where the weights come from (`source`, `source_format`, `base_model`,
    `vision_tower`, `new_vocab_rows`); the license is `license`, else the source card's, else "other".
    `name` is the model's name in the title and examples (default: `repo_id`, else the folder name).
    """
    from huggingface_hub import ModelCard

    folder = Path(folder)
    provenance = dict(provenance or {})
    license = license or provenance.get("license") or "other"
    name = name or (repo_id.split("/")[-1] if repo_id else folder.name)
    repo_id = repo_id or f"<your-namespace>/{name}"
    lines = _usage_section(name, to, repo_id) + _provenance_section(provenance, config) + _license_section(license)
    card = ModelCard(f"---\n{_card_data(to, provenance, license).to_yaml()}\n---\n\n" + "\n".join(lines))
    path = folder / "README.md"
    with atomic_write(path, newline="") as handle:  # newline="": as `ModelCard.save` writes it
        handle.write(str(card))
    return path


def _card_data(to: str, provenance: dict[str, Any], license: str) -> Any:
    """The card's front matter: license, library, pipeline, tags, and the base model when it is a Hub id."""
    from huggingface_hub import ModelCardData

    base_model = provenance.get("base_model") if "/" in str(provenance.get("base_model", "")) else None
    return ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=["sharegpt4v", "llava", "vision-language"] + (["custom_code"] if to == "sharegpt4v" else []),
        base_model=base_model,
    )


def _usage_section(name: str, to: str, repo_id: str) -> list[str]:
    """The title, what the checkpoint is, and how to use it (plugin: remote code; llava-hf: Llava classes)."""
    kind = "ShareGPT4V plugin checkpoint (remote code)" if to == "sharegpt4v" else "llava-hf checkpoint"
    code_files = ", ".join(f"`{module}.py`" for module in REMOTE_CODE_MODULES)
    return [
        f"# {name}",
        "",
        f"A ShareGPT4V vision-language model (CLIP ViT-L/14-336 -> 2-layer GELU MLP -> LLaMA/Vicuna) as a {kind}.",
        "",
        "## Usage",
        "",
        (PLUGIN_USAGE if to == "sharegpt4v" else LLAVA_USAGE).format(repo_id=repo_id, code_files=code_files),
        "",
    ]


def _provenance_section(provenance: dict[str, Any], config: Any) -> list[str]:
    """Where the weights come from: source and date, vision tower, model size, the rows added to the vocabulary."""
    source = provenance.get("source")
    lines = ["## Provenance", ""]
    if source:
        lines.append(
            f"- Converted from `{source}` ({provenance.get('source_format', 'unknown')} layout) with "
            f"`sharegpt4v convert` on {datetime.date.today().isoformat()}."
        )
    if provenance.get("vision_tower"):
        lines.append(f"- Vision tower: `{provenance['vision_tower']}`.")
    if config is not None:
        text = config.text_config
        lines.append(
            f"- Language model: {text.num_hidden_layers} layers, hidden size {text.hidden_size}, vocabulary "
            f"{text.vocab_size}; {config.image_seq_length} tokens per image."
        )
    rows = int(provenance.get("new_vocab_rows") or 0)
    if source and rows:
        lines.append(
            f"- Weights are copied unchanged except {rows} rows appended to `embed_tokens` and `lm_head` for `<image>`, "
            "`<pad>` and padding to a multiple of 64; they hold the mean of the original rows, so the logits of every "
            "original token and the greedy outputs equal the original model's."
        )
    elif source:
        lines.append("- Weights are copied unchanged (same tensors, same values).")
    return lines


def _license_section(license: str) -> list[str]:
    return [
        "",
        "## License",
        "",
        f"License: `{license}`. The weights keep the license of the model they were converted from "
        "(ShareGPT4V / LLaVA-1.5 builds on LLaMA 2 / Vicuna: the Llama 2 Community License applies).",
        "",
    ]


def _auto_maps(value: Any) -> Iterator[dict[str, Any]]:
    """Every `auto_map` mapping in a JSON value (processor_config.json nests the image processor's)."""
    if isinstance(value, dict):
        if isinstance(value.get("auto_map"), dict):
            yield value["auto_map"]
        for item in value.values():
            yield from _auto_maps(item)
    elif isinstance(value, list):
        for item in value:
            yield from _auto_maps(item)


# How transformers finds the modules a remote-code file imports (dynamic_module_utils.get_relative_imports).
_RELATIVE_IMPORT = re.compile(r"^\s*(?:import|from)\s+\.(\w+)\s+import", flags=re.MULTILINE)


def remote_code_files(folder: str | os.PathLike) -> list[str]:
    """The code files `trust_remote_code=True` needs from a checkpoint folder: each module an `auto_map` entry
    names (in config.json, processor_config.json, preprocessor_config.json, tokenizer_config.json, ...; an
    entry "module.Class", or a list of them, points to module.py; entries of another repo, "repo--module.Class",
    are not this folder's), and the modules those import with `from .module import`, recursively."""
    folder = Path(folder)
    needed: list[str] = []
    for path in sorted(folder.glob("*config.json")):
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UsageError(f"{path} is not valid JSON ({error}): re-save the checkpoint.") from error
        for auto_map in _auto_maps(content):
            for reference in auto_map.values():
                for entry in reference if isinstance(reference, (list, tuple)) else [reference]:
                    if isinstance(entry, str) and "--" not in entry and "." in entry:
                        needed.append(entry.rsplit(".", 1)[0] + ".py")
    index = 0
    needed = list(dict.fromkeys(needed))
    while index < len(needed):
        path = folder / needed[index]
        if path.is_file():
            imported = _RELATIVE_IMPORT.findall(path.read_text(encoding="utf-8"))
            needed += [f"{name}.py" for name in imported if f"{name}.py" not in needed]
        index += 1
    return needed


def check_checkpoint_folder(folder: Path) -> str:
    """Raise `UsageError` unless `folder` is a complete checkpoint; returns its model_type. A plugin checkpoint
    needs `auto_map` in config.json and every code file `remote_code_files` lists."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not folder.is_dir():
        raise MissingFileError(
            f"{folder} is not a folder: give a checkpoint folder (convert or save_pretrained first)."
        )
    if not config_path.is_file():
        raise UsageError(f"{folder} has no config.json: not a checkpoint folder (convert or save_pretrained first).")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{config_path} is not valid JSON ({error}): re-save the checkpoint.") from error
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise UsageError(f"{folder} holds no weights (*.safetensors or pytorch_model*.bin).")
    model_type = config.get("model_type")
    if model_type == "sharegpt4v":
        missing = [name for name in remote_code_files(folder) if not (folder / name).is_file()]
        if missing or "auto_map" not in config:
            what = ", ".join(missing) + " (named by its auto_map)" if missing else "auto_map in config.json"
            raise UsageError(
                f"{folder} is a plugin checkpoint but lacks {what}: users could not load it with "
                "trust_remote_code=True. Re-save it with save_pretrained or `sharegpt4v convert`."
            )
    return str(model_type)


def explain_hub_error(error: BaseException) -> str | None:
    """One sentence saying why a Hub call failed and what to do, for the errors that come from the
    environment (offline mode, no network, no login or rights, no such repo); None for anything else."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    endpoint = constants.ENDPOINT
    if isinstance(error, OfflineModeIsEnabled) or (
        constants.HF_HUB_OFFLINE and isinstance(error, LocalEntryNotFoundError)
    ):
        return "HF_HUB_OFFLINE=1 is set, so the Hub is not contacted: unset it (or set HF_HUB_OFFLINE=0) and retry"
    if isinstance(error, LocalEntryNotFoundError):  # the download failed and the cache has no copy
        return f"the Hub at {endpoint} could not be reached and the local cache has no copy: check the network"
    if isinstance(error, RepositoryNotFoundError):
        return "the repo does not exist, or it is private and you are not logged in (`hf auth login`, or HF_TOKEN)"
    if isinstance(error, EntryNotFoundError):
        return "the repo has no such file"
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 401:
            return "not logged in, or the token is invalid: run `hf auth login`, set HF_TOKEN or pass --token"
        if status == 403:
            return "the token has no write access to this repo: use a token with write access, or another repo id"
        return f"the Hub at {endpoint} answered HTTP {status}: {str(error).splitlines()[0]}"
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"ConnectError", "ConnectTimeout", "TimeoutException", "ConnectionError", "NetworkError"}:
        return f"the Hub at {endpoint} could not be reached ({error}): check the network connection or HF_ENDPOINT"
    return None


@contextlib.contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn the Hub errors `explain_hub_error` knows into a `UsageError` ("{what} failed: why, and the fix");
    everything else goes through unchanged."""
    try:
        yield
    except UsageError:
        raise
    except Exception as error:
        reason = explain_hub_error(error)
        if reason is None:
            raise
        raise UsageError(f"{what} failed: {reason}.") from error


def check_model_argument(name: str, flag: str, what: str = "a checkpoint folder (with config.json)") -> None:
    """Raise `UsageError` unless `name` (the value of `flag`) is a local folder with a config.json, or a Hub model
    repo whose config.json can be fetched (or is in the local cache): checked before a command writes anything,
    so that a typo costs a line, not a traceback after half the work."""
    path = Path(name).expanduser()
    if path.is_file():
        raise UsageError(f"{flag} {name} is a file: give {what}.")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"{flag} {name} has no config.json, so it is not a checkpoint: give {what}.")
        return
    if not looks_like_hub_id(name):
        raise MissingFileError(f"{flag} {name}: no such folder; give {what} or a Hub model id (owner/name).")
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(name, "config.json")
    except Exception as error:  # noqa: BLE001 - every failure means the same here: the model is not available
        reason = explain_hub_error(error) or f"{type(error).__name__}: {str(error).splitlines()[0]}"
        raise UsageError(
            f"{flag} {name} is not a local folder and its config.json could not be fetched from the Hub: {reason}."
        ) from error


def open_hub_repo(repo_id: str, repo_type: str, private: bool | None, token: str | None) -> tuple[Any, str]:
    """An `HfApi` and the URL of the Hub repo `repo_id`, created if it does not exist. Pushes call it first, so
    that no network, offline mode or no write access fail before anything is written or uploaded."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    return api, str(url)


def push_checkpoint(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    license: str | None = None,
) -> str:
    """Upload a checkpoint folder (weights, code, processor, model card) to the Hub repo `repo_id`.

    Writes a model card first when the folder has no README.md. Returns the URL of the commit.
    """
    folder = Path(folder)
    model_type = check_checkpoint_folder(folder)
    api, _ = open_hub_repo(repo_id, "model", private=private, token=token)  # before the card is written
    if not (folder / "README.md").is_file():
        write_model_card(
            folder, to="sharegpt4v" if model_type == "sharegpt4v" else "llava-hf", repo_id=repo_id, license=license
        )
    if revision is not None and not revision.startswith("refs/"):
        # upload_folder commits only to an existing branch: create it (from main) the first time. Pull-request
        # refs (refs/pr/N) exist already and cannot be created.
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    commit = api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=commit_message or f"Upload {model_type} checkpoint with sharegpt4v push",
        create_pr=create_pr,
        ignore_patterns=[".*", "*.partial*", "__pycache__/*"],
    )
    return str(getattr(commit, "commit_url", commit))


@dataclass
class CheckpointPushArguments:
    """`sharegpt4v push DST REPO_ID`."""

    folder: str = positional("checkpoint folder (from `sharegpt4v convert` or save_pretrained)", "DST")
    repo_id: str = positional("Hub repo id, e.g. your-name/ShareGPT4V-7B", "REPO_ID")
    private: bool = field(default=False, metadata={"help": "create the repo as private"})
    revision: str | None = field(
        default=None, metadata={"help": "branch to push to (created from main if it does not exist)"}
    )
    commit_message: str | None = field(default=None, metadata={"help": "commit message"})
    create_pr: bool = field(default=False, metadata={"help": "open a pull request instead of committing"})
    license: str | None = field(
        default=None, metadata={"help": "license field of the model card written if none exists"}
    )
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the saved login)"})


ARGUMENTS = CheckpointPushArguments


def run(args: CheckpointPushArguments) -> int:
    with hub_errors(f"Pushing {args.folder} to {args.repo_id}"):
        url = push_checkpoint(
            args.folder,
            args.repo_id,
            private=args.private or None,
            token=args.token,
            revision=args.revision,
            commit_message=args.commit_message,
            create_pr=args.create_pr,
            license=args.license,
        )
    files = sum(1 for p in Path(args.folder).iterdir() if p.is_file())
    print(f"Pushed {args.folder} ({files} files) to {args.repo_id}: {url}")
    return 0


__all__ = [
    "ARGUMENTS",
    "CheckpointPushArguments",
    "check_checkpoint_folder",
    "check_model_argument",
    "explain_hub_error",
    "hub_errors",
    "open_hub_repo",
    "push_checkpoint",
    "read_license",
    "remote_code_files",
    "write_model_card",
]
