"""Tiny models, tokenizers and corpora built in code, for the tests, the benchmarks, the examples and the demo.

Everything here runs on a CPU in seconds with nothing downloaded:
- `train_llama_sentencepiece` / `llama_tokenizer`: a SentencePiece BPE model made like LLaMA's (byte
  fallback, unk 0, bos 1, eos 2, no pad, a "▁" before the text, identity normalisation, digits split, no
  whitespace folding) trained on a few lines, and the `LlamaTokenizer` around it (BOS added, no EOS, as
  Vicuna's), optionally with `<image>` (and `<pad>`) added as llava-hf does;
- `tiny_vision_kwargs` / `tiny_text_kwargs` / `tiny_config_kwargs`: a CLIP vision tower at 336/14 (the real
  576 image tokens, hidden size 32), a Llama of hidden size 32, and the ShareGPT4VConfig of both;
- `write_tiny_checkpoint`: a tiny random ShareGPT4V saved like a real checkpoint (weights, processor);
- `make_tiny_inputs`: a tiny CLIP, a tiny Llama and a corpus of drawn shapes, the inputs of `sharegpt4v init`
  and `sharegpt4v train` (examples/training/make_tiny_inputs.py is its command line).

Importing this module is light: torch, transformers and sentencepiece load inside the functions.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The vicuna_v1 system prompt: in every chat prompt, so in every tokenizer's training lines.
SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)

# Lines the default tokenizer is trained on: the system prompt, typical turns and captions. Its vocabulary has
# "▁USER" as one piece and no "USER": with `legacy=False` every turn after an answer ("</s>USER") would start
# with <unk> and the original would drop every multi-turn sample, so chat tokenizers trained on these lines
# are made with `legacy=True`. The released setting (legacy=False) is tested with a LLaMA-2-like vocabulary
# (tests/fixtures/llama_tokenizer/).
TOKENIZER_LINES = [
    SYSTEM_PROMPT,
    "USER: What is in the image? ASSISTANT: A dog is sitting on the grass next to a red ball.",
    "USER: How many cats are there? ASSISTANT: There are two cats lying on a pink blanket.",
    "Analyze the image in a comprehensive and detailed manner.",
    "The image shows a man ironing clothes on the back of a yellow taxi in a busy city street.",
    "A calm lake with boats, a wooden pier and mountains under a blue sky with white clouds.",
    "Answer the question using a single word or phrase. Answer with the option's letter.",
    "red green blue yellow small large circle square triangle left right top bottom 0 1 2 3 4 5 6 7 8 9",
]

# SentencePiece trainer options that make a model like LLaMA's `tokenizer.model` (docs/reference.md, tokenizer).
LLAMA_SENTENCEPIECE = {
    "model_type": "bpe",
    "byte_fallback": True,
    "unk_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "pad_id": -1,
    "add_dummy_prefix": True,
    "normalization_rule_name": "identity",
    "remove_extra_whitespaces": False,
    "split_digits": True,
    "allow_whitespace_only_pieces": True,
    "character_coverage": 1.0,
    "minloglevel": 2,
}


def train_llama_sentencepiece(
    path: Path, lines: Iterable[str] | None = None, vocab_size: int = 700, **options: Any
) -> Path:
    """Train a LLaMA-style SentencePiece BPE model on `lines` (default: `TOKENIZER_LINES` 20 times) and write
    it to `path`. `options` override the trainer options of `LLAMA_SENTENCEPIECE`."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_LINES * 20 if lines is None else lines),
        model_writer=buffer,
        vocab_size=vocab_size,
        **{**LLAMA_SENTENCEPIECE, **options},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def llama_tokenizer(
    folder: Path,
    lines: Iterable[str] | None = None,
    vocab_size: int = 700,
    *,
    image_token: bool = False,
    legacy: bool | None = None,
    add_bos_token: bool = True,
    **options: Any,
) -> Any:
    """A `LlamaTokenizer` (BOS added unless `add_bos_token=False`, no EOS, as Vicuna's) over a freshly trained
    `tokenizer.model`, saved to `folder` and returned. `image_token` adds `<image>` (and `<pad>`) as llava-hf
    does; `legacy`, when given, is set and saved (the tokenizer's default otherwise); `lines`, `vocab_size` and
    `options` go to `train_llama_sentencepiece`."""
    from transformers import LlamaTokenizer

    train_llama_sentencepiece(Path(folder) / "tokenizer.model", lines, vocab_size, **options)
    tokenizer = LlamaTokenizer.from_pretrained(folder, add_bos_token=add_bos_token, add_eos_token=False)
    if legacy is not None:
        tokenizer.legacy = tokenizer.init_kwargs["legacy"] = legacy  # the attribute is read, init_kwargs is saved
    if image_token:
        from .processing_sharegpt4v import ShareGPT4VProcessor

        ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    tokenizer.save_pretrained(folder)
    return tokenizer


def tiny_sizes(
    hidden_size: int, num_hidden_layers: int, num_attention_heads: int = 4, intermediate_size: int | None = None
) -> dict[str, int]:
    """The size keys of a transformer config (the MLP twice as wide as the hidden size unless given)."""
    return {
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 2 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
    }


def tiny_vision_kwargs(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a tiny `CLIPVisionConfig`: the real 336/14 geometry (576 image tokens), hidden 32."""
    return {**tiny_sizes(32, 3), "image_size": 336, "patch_size": 14, "projection_dim": 32, **overrides}


def tiny_text_kwargs(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a tiny `LlamaConfig`: hidden 32, two layers (vocabulary: LlamaConfig's unless given)."""
    return {**tiny_sizes(32, 2), **overrides}


def tiny_config_kwargs(vocab_size: int = 704, image_token_id: int = 700, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a tiny ShareGPT4VConfig: CLIP at 336/14 (576 image tokens), hidden sizes 32. The
    defaults fit `llama_tokenizer(..., image_token=True)`: 700 pieces, `<image>` = 700, `<pad>` = 701."""
    text = tiny_text_kwargs(
        model_type="llama",
        num_key_value_heads=4,
        vocab_size=vocab_size,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        pad_token_id=0,
    )
    return {"vision_config": tiny_vision_kwargs(), "text_config": text, "image_token_id": image_token_id, **overrides}


def write_tiny_checkpoint(
    folder: Path, vision: dict[str, Any] | None = None, text: dict[str, Any] | None = None, seed: int = 0
) -> Path:
    """A tiny random ShareGPT4V saved to `folder` like a real checkpoint (weights, processor, tokenizer):
    `llama_tokenizer` with `<image>` (legacy, see `TOKENIZER_LINES`), `tiny_config_kwargs` with `vision` /
    `text` keys overriding its vision and text configs, the embeddings padded to a multiple of 64 as the
    conversion does. The llava-hf export of it reproduces the original token ids."""
    import torch

    from .configuration_sharegpt4v import ShareGPT4VConfig
    from .modeling_sharegpt4v import ShareGPT4VForCausalLM
    from .processing_sharegpt4v import ShareGPT4VProcessor

    folder = Path(folder)
    tokenizer = llama_tokenizer(folder, image_token=True, legacy=True)
    kwargs = tiny_config_kwargs(-(-len(tokenizer) // 64) * 64, tokenizer.convert_tokens_to_ids("<image>"))
    kwargs["vision_config"].update(vision or {})
    kwargs["text_config"].update(text or {})
    config = ShareGPT4VConfig(**kwargs)
    torch.manual_seed(seed)
    ShareGPT4VForCausalLM(config).save_pretrained(folder)
    ShareGPT4VProcessor.from_model_config(config, tokenizer).save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------- the inputs of init and train

COLORS = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"]
SHAPES = ["circle", "square", "triangle"]
SIZES = ["small", "large"]
PLACES = ["top left", "top right", "bottom left", "bottom right", "centre", "left", "right", "top", "bottom"]
QUESTION = "Describe the image in detail."


def _scene(rng: random.Random, n: int) -> list[tuple[str, str, str, str]]:
    return [(rng.choice(SIZES), rng.choice(COLORS), rng.choice(SHAPES), rng.choice(PLACES)) for _ in range(n)]


def _draw(scene: list[tuple[str, str, str, str]], rng: random.Random, size: tuple[int, int]) -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (230, 230, 230))
    draw = ImageDraw.Draw(image)
    for obj_size, color, shape, _ in scene:
        radius = (0.18 if obj_size == "large" else 0.08) * min(size)
        x, y = rng.uniform(radius, size[0] - radius), rng.uniform(radius, size[1] - radius)
        box = (x - radius, y - radius, x + radius, y + radius)
        if shape == "circle":
            draw.ellipse(box, fill=color)
        elif shape == "square":
            draw.rectangle(box, fill=color)
        else:
            draw.polygon([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)], fill=color)
    return image


def _caption(scene: list[tuple[str, str, str, str]]) -> str:
    return " ".join(f"A {s} {c} {shape} is at the {p} of the image." for s, c, shape, p in scene)


def make_corpus_rows(n_samples: int, seed: int = 0, max_sentences: int = 24) -> dict[str, list]:
    """Rows in the corpora layout (id, images, messages, source) of drawn shapes with detailed captions; caption
    lengths spread from one sentence to `max_sentences`; every fourth sample has a second turn."""
    rng = random.Random(seed)
    rows: dict[str, list] = {"id": [], "images": [], "messages": [], "source": []}
    for index in range(n_samples):
        scene = _scene(rng, rng.randint(1, max_sentences))
        image = _draw(scene, rng, (rng.choice([160, 224, 320]), rng.choice([160, 224, 320])))
        messages = [
            {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": [{"type": "text", "text": _caption(scene)}]},
        ]
        if index % 4 == 3:  # a second turn, as in the fine-tuning mix
            messages += [
                {"role": "user", "content": [{"type": "text", "text": "How many objects are there?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": f"There are {len(scene)} objects."}]},
            ]
        rows["id"].append(f"tiny-{index:05d}")
        rows["images"].append([image])
        rows["messages"].append(messages)
        rows["source"].append("tiny")
    return rows


def make_tiny_inputs(root: str | Path, n_samples: int = 32, seed: int = 0, max_sentences: int = 24) -> dict[str, Path]:
    """Write `vit/` (a tiny CLIPVisionModel at 336/14), `llm/` (a tiny LlamaForCausalLM with a tokenizer
    trained on the corpus text) and `corpus/` (`make_corpus_rows` as parquet, in the `sharegpt4v data build`
    layout) under `root`; return their paths."""
    import torch
    from datasets import Dataset
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from .corpora.layout import corpus_features

    root = Path(root)
    paths = {"vit": root / "vit", "llm": root / "llm", "corpus": root / "corpus"}
    rows = make_corpus_rows(n_samples, seed, max_sentences)
    lines = [SYSTEM_PROMPT, QUESTION, "How many objects are there? There are 12 objects."]
    lines += [m["content"][-1]["text"] for messages in rows["messages"] for m in messages]
    llama_tokenizer(paths["llm"], lines * 4, 700)
    torch.manual_seed(seed)
    text = tiny_text_kwargs(vocab_size=700, max_position_embeddings=8192, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(LlamaConfig(**text)).save_pretrained(paths["llm"])
    CLIPVisionModel(CLIPVisionConfig(**tiny_vision_kwargs())).save_pretrained(paths["vit"])
    data_dir = paths["corpus"] / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=corpus_features()).to_parquet(str(data_dir / "train-00000-of-00001.parquet"))
    return paths
