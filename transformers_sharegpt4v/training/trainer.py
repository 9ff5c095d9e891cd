"""SFTTrainer glue: load the model, processor and data of a recipe, apply the stage policy, train.

TRL's SFTTrainer is used as is, with three things of ours passed in:
- the collator (`ShareGPT4VDataCollator`): the original labels and padding-free packing, which TRL does not
  offer for image datasets (it raises on `padding_free`/`packing` there and, in plain `messages` mode,
  trains on every token). So the recipe's `padding_free` goes to our collator and TRL sees `False`;
  `dataset_kwargs={"skip_prepare_dataset": True}` and `remove_unused_columns=False` keep the raw rows;
- the trainable-parameter policy of the stage (`apply_stage_policy`), applied before the trainer builds
  its optimizer (or, with `use_peft`, LoRA on the LLM plus the projector as a fully trained module);
- with `padding_free` on sdpa, the language model attends per packed sample (`sdpa_varlen`, varlen.py)
  instead of through a (total x total) block-diagonal mask; on CUDA, flash-attention's varlen kernel
  reads the sample boundaries from the position ids;
- `ShareGPT4VTrainer.log` adds throughput: samples/s and tokens/s (real tokens, image positions included,
  padding excluded) over the steps since the previous log line, summed over processes.

TRL's fused LM head calls the backbone (`model.model`, our `ShareGPT4VModel`) directly; the image merge
happens there, so image batches work unchanged.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import torch
from datasets import Dataset
from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer

from ..corpora.layout import is_save_to_disk_folder
from ..dtypes import parse_dtype
from ..errors import UsageError
from .collator import ShareGPT4VDataCollator, drop_overlong
from .recipe import ShareGPT4VArguments
from .trainable import apply_stage_policy
from .varlen import use_sdpa_varlen

logger = logging.getLogger(__name__)

# LoRA goes on the LLM's linear layers only (the vision tower's q/k/v names would match a plain list).
DEFAULT_LORA_TARGET = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class ShareGPT4VTrainer(SFTTrainer):
    """`SFTTrainer` that also logs samples/s and tokens/s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._throughput_counts = torch.zeros(2, dtype=torch.float64)  # samples, real tokens
        self._throughput_since: float | None = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._throughput_since is None:
            self._throughput_since = time.perf_counter()
        if "attention_mask" in inputs:
            samples, tokens = inputs["attention_mask"].shape[0], int(inputs["attention_mask"].sum())
        else:
            positions = inputs["position_ids"]
            samples, tokens = int((positions == 0).sum()), positions.numel()
        self._throughput_counts += torch.tensor([samples, tokens], dtype=torch.float64)
        return super().training_step(model, inputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._throughput_since is not None:
            elapsed = max(time.perf_counter() - self._throughput_since, 1e-9)
            counts = self._throughput_counts.to(self.accelerator.device)
            if self.accelerator.num_processes > 1:
                counts = self.accelerator.reduce(counts, reduction="sum")
            logs["samples_per_second"] = round(float(counts[0]) / elapsed, 3)
            logs["tokens_per_second"] = round(float(counts[1]) / elapsed, 1)
            self._throughput_counts.zero_()
            self._throughput_since = time.perf_counter()
        super().log(logs, start_time)


def load_training_dataset(script_args: ScriptArguments) -> Any:
    """The train split of `dataset_name`: a `sharegpt4v data build` folder, a `save_to_disk` folder or a Hub id."""
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    name = script_args.dataset_name
    if name is None:
        raise UsageError("The recipe has no `dataset_name`: set it to a `sharegpt4v data build` folder or a Hub id.")
    if is_save_to_disk_folder(name):
        dataset = load_from_disk(str(name))
    else:
        dataset = load_dataset(name, name=script_args.dataset_config, streaming=script_args.dataset_streaming)
    if isinstance(dataset, (DatasetDict, dict)) or hasattr(dataset, "keys"):
        split = script_args.dataset_train_split
        if split not in dataset:
            raise UsageError(f"Dataset {name!r} has no split {split!r} (splits: {list(dataset)}).")
        dataset = dataset[split]
    if isinstance(dataset, Dataset):
        missing = {"messages", "images"} - set(dataset.column_names)
        if missing:
            raise UsageError(
                f"Dataset {name!r} lacks the column(s) {sorted(missing)}: build it with `sharegpt4v data build` "
                "(columns id, images, messages, source)."
            )
    return dataset


def load_model(model_args: ModelConfig, training_args: SFTConfig) -> torch.nn.Module:
    """`AutoModelForImageTextToText.from_pretrained` with the recipe's dtype and attention (flash on CUDA)."""
    from transformers import AutoModelForImageTextToText

    from ..modeling_sharegpt4v import default_attn_implementation

    if model_args.model_name_or_path is None:
        raise UsageError("The recipe has no `model_name_or_path`: make one with `sharegpt4v init` or `convert`.")
    from accelerate import PartialState
    from trl import get_quantization_config

    # "auto": the checkpoint's dtype (transformers reads it); unset: float32
    dtype = "auto" if model_args.dtype == "auto" else parse_dtype(model_args.dtype) or torch.float32
    device = "cpu" if training_args.use_cpu else None
    kwargs = {}
    quantization_config = get_quantization_config(model_args)  # QLoRA: load_in_4bit / load_in_8bit
    if quantization_config is not None:
        # each process loads its quantized copy on its own device
        kwargs.update(quantization_config=quantization_config, device_map={"": PartialState().local_process_index})
    return AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation or default_attn_implementation(device),
        trust_remote_code=training_args.trust_remote_code,
        **kwargs,
    )


def load_processor(model_args: ModelConfig) -> Any:
    from ..processing_sharegpt4v import ShareGPT4VProcessor

    processor = ShareGPT4VProcessor.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    if processor.tokenizer.pad_token is None:
        raise UsageError(
            f"The tokenizer of {model_args.model_name_or_path!r} has no pad token: rebuild the checkpoint with "
            "`sharegpt4v init` (it adds one)."
        )
    return processor


def peft_config_for(model_args: ModelConfig, stage: str) -> Any:
    """LoRA on the LLM's linear layers; the projector trained in full (`modules_to_save`)."""
    from trl import get_peft_config

    model_args = copy.copy(model_args)  # the defaults below are ours; the caller's ModelConfig stays as given
    if model_args.lora_target_modules is None:
        model_args.lora_target_modules = DEFAULT_LORA_TARGET
    if model_args.lora_modules_to_save is None:
        model_args.lora_modules_to_save = ["multi_modal_projector"]
    config = get_peft_config(model_args)
    if stage == "pretrain":
        logger.warning("use_peft: LoRA adapts the LLM only; the vision layers of stage pretrain stay frozen.")
    return config


def build_trainer(
    script_args: ScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    ours: ShareGPT4VArguments,
    model: torch.nn.Module | None = None,
    processor: Any = None,
    train_dataset: Any = None,
) -> ShareGPT4VTrainer:
    """An SFTTrainer for the stage of `ours`, with our collator and trainable parameters."""
    processor = processor if processor is not None else load_processor(model_args)
    model = model if model is not None else load_model(model_args, training_args)
    train_dataset = train_dataset if train_dataset is not None else load_training_dataset(script_args)
    trl_args = _arguments_for_trl(training_args)
    padding_free = bool(training_args.padding_free)
    collator = _collator(processor, model, ours, trl_args, padding_free)
    train_dataset = _drop_overlong(train_dataset, processor, ours, trl_args)
    peft_config = _trainable_parameters(model, model_args, ours)
    _log_stage(ours, trl_args, processor, padding_free)
    trainer = ShareGPT4VTrainer(
        model=model,
        args=trl_args,
        data_collator=collator,
        train_dataset=train_dataset,
        processing_class=processor,
        peft_config=peft_config,
    )
    # TRL read padding_free in __init__ only; the saved training arguments say what the run does (the collator
    # packs), as the recipe said.
    trainer.args.padding_free = training_args.padding_free
    return trainer


def _arguments_for_trl(training_args: SFTConfig) -> SFTConfig:
    """A copy of the recipe's SFTConfig with the settings TRL must see (the caller's stays as given): no TRL
    padding-free or packing (our collator packs), raw rows kept, no TRL loss masks (the collator's labels)."""
    if training_args.packing:
        raise UsageError(
            "packing=true is TRL's dataset-level packing, which TRL does not support for image datasets: use "
            "padding_free=true (batch-level packing by ShareGPT4V's collator) instead."
        )
    trl_args = copy.copy(training_args)
    trl_args.padding_free = False  # TRL refuses it for image datasets; our collator packs instead
    trl_args.remove_unused_columns = False
    trl_args.dataset_kwargs = {**(trl_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    if trl_args.assistant_only_loss or trl_args.completion_only_loss:
        logger.warning(
            "assistant_only_loss/completion_only_loss are ignored: the collator builds the original labels."
        )
        trl_args.assistant_only_loss = False
        trl_args.completion_only_loss = None
    return trl_args


def _collator(
    processor: Any, model: torch.nn.Module, ours: ShareGPT4VArguments, trl_args: SFTConfig, padding_free: bool
) -> ShareGPT4VDataCollator:
    """The collator of the stage (template, pad to square, max_length, packing); with padding_free on sdpa, the
    language model attends per packed sample."""
    # flash-attention finds the packed samples from position_ids itself (prepare_fa_kwargs_from_position_ids).
    # cu_seq_lens are NOT passed: LlavaModel forwards its kwargs to the vision tower too, whose flash attention
    # would then split the image tokens at the text's boundaries.
    if padding_free and use_sdpa_varlen(model):
        logger.info("padding_free: the language model attends per packed sample (sdpa_varlen, see varlen.py).")
    return ShareGPT4VDataCollator(
        processor=processor,
        chat_template=ours.template,
        do_pad=ours.do_pad,
        max_length=trl_args.max_length,
        padding_free=padding_free,
        pad_to_multiple_of=trl_args.pad_to_multiple_of,
        return_flash_kwargs=False,
    )


def _drop_overlong(train_dataset: Any, processor: Any, ours: ShareGPT4VArguments, trl_args: SFTConfig) -> Any:
    """A `Dataset` without the samples whose images cannot fit max_length, with lengths for group_by_length.
    An IterableDataset is not filtered: the collator skips (and counts) those samples."""
    if not isinstance(train_dataset, Dataset):
        return train_dataset
    group = trl_args.train_sampling_strategy == "group_by_length"
    has_lengths = trl_args.length_column_name in train_dataset.column_names
    with trl_args.main_process_first(desc="measuring the dataset"):  # one process fills the cache
        train_dataset = drop_overlong(
            train_dataset,
            processor,
            ours.template,
            trl_args.max_length,
            trl_args.dataset_num_proc,
            add_lengths=group and not has_lengths,
        )
    if group and not has_lengths and trl_args.length_column_name != "length":
        train_dataset = train_dataset.rename_column("length", trl_args.length_column_name)
    return train_dataset


def _trainable_parameters(model: torch.nn.Module, model_args: ModelConfig, ours: ShareGPT4VArguments) -> Any:
    """The LoRA config with `use_peft` (None otherwise, after applying and logging the stage policy)."""
    if model_args.use_peft:
        return peft_config_for(model_args, ours.stage)
    report = apply_stage_policy(model, ours.stage, ours.vision_trainable_from_layer)
    logger.info("Trainable parameters\n%s", report.summary())
    return None


def _log_stage(ours: ShareGPT4VArguments, trl_args: SFTConfig, processor: Any, padding_free: bool) -> None:
    logger.info(
        "stage %s: template %s, pad to square %s, max_length %s text tokens (+%d per image), %s",
        ours.stage,
        ours.template,
        ours.do_pad,
        trl_args.max_length,
        processor.image_seq_length - 1,
        "padding-free packing" if padding_free else "padded batches",
    )


def train(
    script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig, ours: ShareGPT4VArguments
) -> ShareGPT4VTrainer:
    """Train a recipe end to end: build the trainer, train (resuming if asked), save the final model."""
    trainer = build_trainer(script_args, training_args, model_args, ours)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json (the loss log) beside the final model
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    collator = trainer.data_collator
    if collator.skipped:
        logger.warning("%d sample(s) skipped by the collator (images beyond max_length).", collator.skipped)
    return trainer


__all__ = [
    "DEFAULT_LORA_TARGET",
    "ShareGPT4VTrainer",
    "build_trainer",
    "load_model",
    "load_processor",
    "load_training_dataset",
    "peft_config_for",
    "train",
]
