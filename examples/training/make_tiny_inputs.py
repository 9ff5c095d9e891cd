"""Make the inputs of a CPU smoke test of ShareGPT4V training: a tiny CLIP, a tiny Llama and a caption corpus.

    python examples/training/make_tiny_inputs.py runs/tiny
    sharegpt4v init runs/tiny/init --vision runs/tiny/vit --llm runs/tiny/llm
    sharegpt4v train --config examples/recipes/tiny_pretrain.yaml
    sharegpt4v train --config examples/recipes/tiny_finetune.yaml

Writes `vit/` (CLIPVisionModel at 336/14, so the real 576 image tokens, hidden 32, 3 layers), `llm/`
(LlamaForCausalLM, hidden 32, 2 layers, with a LLaMA-style SentencePiece tokenizer trained here on the
corpus text) and `corpus/` (parquet in the `sharegpt4v data build` layout: id, images, messages, source)
of drawn shapes with detailed captions of very different lengths (1 to `max_sentences` sentences), plus
a few two-turn conversations. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

COLORS = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"]
SHAPES = ["circle", "square", "triangle"]
SIZES = ["small", "large"]
PLACES = ["top left", "top right", "bottom left", "bottom right", "centre", "left", "right", "top", "bottom"]
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
QUESTION = "Describe the image in detail."


def _scene(rng: random.Random, n: int) -> list[tuple[str, str, str, str]]:
    return [(rng.choice(SIZES), rng.choice(COLORS), rng.choice(SHAPES), rng.choice(PLACES)) for _ in range(n)]


def _draw(scene: list[tuple[str, str, str, str]], rng: random.Random, size: tuple[int, int]):
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
    """Rows in the corpora layout; caption lengths spread from one sentence to `max_sentences`."""
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


def train_tokenizer(folder: Path, lines: list[str], vocab_size: int = 700) -> None:
    """A LLaMA-style SentencePiece BPE tokenizer (byte fallback, unk 0, bos 1, eos 2) saved as LlamaTokenizer."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        add_dummy_prefix=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        character_coverage=1.0,
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(buffer.getvalue())
    LlamaTokenizer.from_pretrained(folder, add_bos_token=True, add_eos_token=False).save_pretrained(folder)


def make_tiny_inputs(root: str | Path, n_samples: int = 32, seed: int = 0, max_sentences: int = 24) -> dict[str, Path]:
    """Write `vit/`, `llm/` and `corpus/` under `root`; return their paths."""
    import torch
    from datasets import Dataset
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from transformers_sharegpt4v.corpora.layout import corpus_features

    root = Path(root)
    paths = {"vit": root / "vit", "llm": root / "llm", "corpus": root / "corpus"}
    rows = make_corpus_rows(n_samples, seed, max_sentences)
    lines = [SYSTEM, QUESTION, "How many objects are there? There are 12 objects."]
    lines += [m["content"][-1]["text"] for messages in rows["messages"] for m in messages]
    train_tokenizer(paths["llm"], lines * 4)
    torch.manual_seed(seed)
    llm = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=700,
            max_position_embeddings=8192,
            bos_token_id=1,
            eos_token_id=2,
        )
    )
    llm.save_pretrained(paths["llm"])
    vit = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=336,
            patch_size=14,
            projection_dim=32,
        )
    )
    vit.save_pretrained(paths["vit"])
    data_dir = paths["corpus"] / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=corpus_features()).to_parquet(str(data_dir / "train-00000-of-00001.parquet"))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write vit/, llm/ and corpus/ to")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = make_tiny_inputs(args.root, args.samples, args.seed)
    print("Wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
