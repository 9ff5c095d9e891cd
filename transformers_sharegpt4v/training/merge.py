"""`sharegpt4v merge-lora ADAPTER DST [--base MODEL]`: fold a LoRA adapter into a full plugin checkpoint.

`ADAPTER` is what `sharegpt4v train` with `use_peft: true` saved (adapter_config.json + weights, plus the
processor). The base model is the adapter's `base_model_name_or_path` unless `--base` says otherwise. The
result is a normal checkpoint (weights, remote code, processor) that loads with `trust_remote_code=True`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import positional
from ..dtypes import DTYPE_CHOICES, parse_dtype
from ..errors import MissingFileError, UsageError


def merge_lora(adapter: str | Path, output_dir: str | Path, base: str | None = None, dtype: str | None = None) -> Path:
    """Load `base` + the adapter, merge the LoRA weights, save the full model and the processor to `output_dir`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from ..processing_sharegpt4v import ShareGPT4VProcessor

    adapter = Path(adapter)
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise MissingFileError(f"{str(adapter)!r} has no adapter_config.json: pass the folder a use_peft run saved.")
    base = base or json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{str(config_file)!r} names no base model: pass --base MODEL.")
    torch_dtype = parse_dtype(dtype) or torch.float32
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    output_dir = Path(output_dir)
    merged.save_pretrained(output_dir)
    source = adapter if (adapter / "processor_config.json").is_file() else base
    ShareGPT4VProcessor.from_pretrained(source).save_pretrained(output_dir)
    return output_dir


@dataclass
class MergeArguments:
    """`sharegpt4v merge-lora ADAPTER DST [--base MODEL] [--dtype ...]`."""

    adapter: str = positional("folder saved by a use_peft training run", "ADAPTER")
    output_dir: str = positional("folder to write the merged checkpoint to", "DST")
    base: str | None = field(
        default=None, metadata={"help": "base checkpoint (default: the adapter's base_model_name_or_path)"}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "load and save in this dtype (auto: float32)", "choices": list(DTYPE_CHOICES)},
    )


ARGUMENTS = MergeArguments


def run(args: MergeArguments) -> int:
    if args.base is not None:
        from ..hub import check_model_argument

        check_model_argument(args.base, "--base", "the checkpoint the adapter was trained from")
    output = merge_lora(args.adapter, args.output_dir, base=args.base, dtype=args.dtype)
    print(f"Merged {args.adapter} into a full checkpoint at {output}.")
    return 0


__all__ = ["ARGUMENTS", "MergeArguments", "merge_lora", "run"]
