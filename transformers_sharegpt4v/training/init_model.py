"""`sharegpt4v init DST --vision VIT --llm LLM [--projector FILE]`: assemble a new plugin checkpoint.

The real starting point of stage 1 ("Training recipe" in docs/reference.md): a CLIP vision checkpoint
(`openai/clip-vit-large-patch14-336`, or a `CLIPVisionModel` folder), a Llama/Vicuna checkpoint
(`lmsys/vicuna-7b-v1.5`) and, optionally, LLaVA-1.5's pretrained projector (`mm_projector.bin` or
`.safetensors`, keys `model.mm_projector.{0,2}.{weight,bias}`). The tokenizer gets the `<image>` token
(appended, as llava-hf does) and the LLM's embeddings are resized to a multiple of 64. Without
`--projector` the projector is freshly initialized.

`--vision-config-json` / `--text-config-json` override keys of the loaded configs (for example
`{"num_hidden_layers": 2}` keeps the first two layers), so tests and the demo build tiny models the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arguments import positional
from ..dtypes import DTYPE_CHOICES, parse_dtype
from ..errors import MissingFileError, UsageError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def _json_overrides(text: str | None, flag: str) -> dict[str, Any]:
    if not text:
        return {}
    path = Path(text)
    try:
        value = json.loads(path.read_text() if path.suffix == ".json" and path.is_file() else text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{flag} must be a JSON object or a .json file, got {text!r}: {error}") from error
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object (key -> value), got {type(value).__name__}.")
    return value


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Only errors from the logger `logger_name` while the block runs."""
    target = logging.getLogger(logger_name)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)


def load_projector_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a LLaVA-1.5 `mm_projector.bin`/`.safetensors` into `multi_modal_projector` keys (`linear_{1,2}`)."""
    import torch

    from ..conversion.keys import projector_key

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Projector file not found: {str(path)!r}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        target = projector_key(key)
        if target is None:
            raise UsageError(
                f"Unexpected key {key!r} in projector file {str(path)!r}: expected mm_projector.{{0,2}}.{{weight,bias}} "
                "(LLaVA-1.5 mlp2x_gelu)."
            )
        renamed[target] = tensor
    return renamed


def init_checkpoint(
    output_dir: str | Path,
    vision: str,
    llm: str,
    projector: str | None = None,
    vision_config_overrides: dict[str, Any] | None = None,
    text_config_overrides: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Path:
    """Build a `ShareGPT4VForCausalLM` from a CLIP and a Llama checkpoint, save it with its processor and code."""
    import torch

    torch.manual_seed(seed)
    vision_model, vision_config = _load_vision_tower(vision, vision_config_overrides)
    language_model, tokenizer = _load_language_model(llm, text_config_overrides)
    model = _assemble(vision_model, vision_config, language_model, tokenizer)
    if projector is not None:
        _load_projector(model, projector)
    if dtype is not None:
        model = model.to(dtype)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    _save_processor(model.config, tokenizer, output_dir)
    return output_dir


def _load_vision_tower(vision: str, overrides: dict[str, Any] | None) -> tuple[Any, Any]:
    """The CLIP vision tower in float32 and its config, changed by `overrides`."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    vision_config = CLIPVisionConfig.from_pretrained(vision)
    for key, value in (overrides or {}).items():
        setattr(vision_config, key, value)
    return CLIPVisionModel.from_pretrained(vision, config=vision_config, dtype=torch.float32), vision_config


def _load_language_model(llm: str, overrides: dict[str, Any] | None) -> tuple[Any, Any]:
    """The LLM in float32 and its tokenizer with `<image>` (and `<pad>` if none); the embeddings resized to the
    tokenizer, padded to a multiple of VOCAB_MULTIPLE."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..llama_tokenizer import load_llama_tokenizer
    from ..processing_sharegpt4v import VOCAB_MULTIPLE, ShareGPT4VProcessor

    text_config = AutoConfig.from_pretrained(llm)
    for key, value in (overrides or {}).items():
        setattr(text_config, key, value)
    language_model = AutoModelForCausalLM.from_pretrained(llm, config=text_config, dtype=torch.float32)
    tokenizer = load_llama_tokenizer(llm)  # SentencePiece merge order, `legacy` kept (Vicuna ships tokenizer.model)
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)  # <image> (and <pad> if none)
    if len(tokenizer) > language_model.get_input_embeddings().num_embeddings:
        # transformers' mean resizing (new rows drawn around the mean of the old ones) is what we want; its
        # "To disable this, use `mean_resizing=False`" note on every run is not
        with _quiet("transformers.modeling_utils"):
            language_model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=VOCAB_MULTIPLE)
    language_model.config.pad_token_id = tokenizer.pad_token_id
    return language_model, tokenizer


def _assemble(vision_model: Any, vision_config: Any, language_model: Any, tokenizer: Any) -> Any:
    """A `ShareGPT4VForCausalLM` holding the two models' weights (the projector freshly initialized)."""
    from ..configuration_sharegpt4v import ShareGPT4VConfig
    from ..modeling_sharegpt4v import ShareGPT4VForCausalLM
    from ..processing_sharegpt4v import IMAGE_TOKEN

    config = ShareGPT4VConfig(
        vision_config=vision_config.to_dict(),
        text_config=language_model.config.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(vision_config.image_size // vision_config.patch_size) ** 2,
    )
    model = ShareGPT4VForCausalLM(config)
    model.model.vision_tower.load_state_dict(vision_model.state_dict())
    model.model.language_model.load_state_dict(language_model.model.state_dict())
    model.lm_head.load_state_dict(language_model.lm_head.state_dict())
    return model


def _load_projector(model: Any, projector: str) -> None:
    """LLaVA-1.5's pretrained projector into the model, after checking that its shapes fit."""
    state = load_projector_state(projector)
    expected = {k: tuple(v.shape) for k, v in model.model.multi_modal_projector.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise UsageError(
            f"Projector {projector!r} does not fit: it has {found}, the model needs {expected} (vision hidden "
            f"{model.config.vision_config.hidden_size} -> text hidden {model.config.text_config.hidden_size})."
        )
    model.model.multi_modal_projector.load_state_dict(state)


def _save_processor(config: Any, tokenizer: Any, output_dir: Path) -> None:
    """The processor for inference and stage 2 (pad to square, vicuna_v1 by default, plain also bundled); stage 1
    overrides both at training time without changing the saved processor."""
    from ..image_processing_sharegpt4v import ShareGPT4VImageProcessor
    from ..processing_sharegpt4v import ShareGPT4VProcessor

    size = config.vision_config.image_size
    image_processor = ShareGPT4VImageProcessor(
        do_pad=True, size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    processor = ShareGPT4VProcessor.from_model_config(config, tokenizer, image_processor=image_processor)
    processor.save_pretrained(output_dir)


@dataclass
class InitArguments:
    """`sharegpt4v init DST --vision VIT --llm LLM [--projector FILE]`."""

    output_dir: str = positional("folder to write the new checkpoint to", "DST")
    vision: str = field(metadata={"help": "CLIP (vision) checkpoint: Hub id or folder", "metavar": "VIT"})
    llm: str = field(metadata={"help": "Llama/Vicuna checkpoint: Hub id or folder", "metavar": "LLM"})
    projector: str | None = field(
        default=None, metadata={"help": "LLaVA-1.5 mm_projector.bin or .safetensors (optional)", "metavar": "FILE"}
    )
    vision_config_json: str | None = field(
        default=None, metadata={"help": "overrides of the vision config (JSON or file)", "metavar": "JSON"}
    )
    text_config_json: str | None = field(
        default=None, metadata={"help": "overrides of the LLM config (JSON or file)", "metavar": "JSON"}
    )
    dtype: str = field(
        default="auto", metadata={"help": "save in this dtype (auto: float32)", "choices": list(DTYPE_CHOICES)}
    )
    seed: int = field(default=0, metadata={"help": "seed for the freshly initialized projector"})


ARGUMENTS = InitArguments


def run(args: InitArguments) -> int:
    from ..hub import check_model_argument

    check_model_argument(args.vision, "--vision", "a CLIP checkpoint folder (config.json + weights)")
    check_model_argument(args.llm, "--llm", "a Llama/Vicuna checkpoint folder (config.json, weights, tokenizer)")
    output = init_checkpoint(
        args.output_dir,
        vision=args.vision,
        llm=args.llm,
        projector=args.projector,
        vision_config_overrides=_json_overrides(args.vision_config_json, "--vision-config-json"),
        text_config_overrides=_json_overrides(args.text_config_json, "--text-config-json"),
        dtype=parse_dtype(args.dtype),
        seed=args.seed,
    )
    print(
        f"ShareGPT4V checkpoint written to {output} (vision {args.vision}, llm {args.llm}, projector "
        f"{args.projector or 'new'})."
    )
    return 0


__all__ = ["ARGUMENTS", "InitArguments", "init_checkpoint", "load_projector_state", "run"]
