"""Test fixtures: tiny models with the real 576-token geometry and a LLaMA-style tokenizer, all built in
code, and the four photos in tests/fixtures/images. Nothing here touches the network or reads a file
outside the repository."""

import io
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# The four real photos the tests read (tests/fixtures/images/README.md says where each comes from). They are
# in the repository; a missing one stops the run here, loudly, instead of letting photo tests skip.
FIXTURE_IMAGES = Path(__file__).resolve().parent / "fixtures" / "images"
FIXTURE_PHOTOS = (
    "coco_dog_000000319154.jpg",
    "coco_twocat_000000039769.jpg",
    "extreme_ironing.jpg",
    "waterview.jpg",
)
_missing_photos = [name for name in FIXTURE_PHOTOS if not (FIXTURE_IMAGES / name).is_file()]
if _missing_photos:
    raise FileNotFoundError(f"test photos missing from {FIXTURE_IMAGES}: {', '.join(_missing_photos)}")

# Lines the test tokenizer is trained on: the vicuna_v1 system prompt, typical turns and captions.
TOKENIZER_LINES = [
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.",
    "USER: What is in the image? ASSISTANT: A dog is sitting on the grass next to a red ball.",
    "USER: How many cats are there? ASSISTANT: There are two cats lying on a pink blanket.",
    "Analyze the image in a comprehensive and detailed manner.",
    "The image shows a man ironing clothes on the back of a yellow taxi in a busy city street.",
    "A calm lake with boats, a wooden pier and mountains under a blue sky with white clouds.",
    "Answer the question using a single word or phrase. Answer with the option's letter.",
    "red green blue yellow small large circle square triangle left right top bottom 0 1 2 3 4 5 6 7 8 9",
]


def train_llama_sentencepiece(path: Path, vocab_size: int = 700) -> Path:
    """Train a LLaMA-style SentencePiece BPE model (byte fallback, unk=0, bos=1, eos=2, dummy prefix)."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_LINES * 20),
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
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        minloglevel=2,
    )
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="session")
def spm_model_file(tmp_path_factory) -> Path:
    """Path of a LLaMA-style `tokenizer.model` (the released checkpoints ship one of these)."""
    return train_llama_sentencepiece(tmp_path_factory.mktemp("spm") / "tokenizer.model")


@pytest.fixture(scope="session")
def llama_tokenizer_dir(spm_model_file, tmp_path_factory) -> Path:
    """A folder holding a plain LLaMA tokenizer (no `<image>` token), as Vicuna / ShareGPT4V ship it."""
    folder = tmp_path_factory.mktemp("llama_tokenizer")
    shutil.copy(spm_model_file, folder / "tokenizer.model")
    from transformers import LlamaTokenizer

    tokenizer = LlamaTokenizer.from_pretrained(folder, add_bos_token=True, add_eos_token=False)
    # legacy=True: this toy vocabulary has "▁USER" as one piece, so with legacy=False every turn after an answer
    # would start with <unk> ("USER" is no piece) and the original would drop every multi-turn sample. The
    # released setting (legacy=False) is tested with a LLaMA-2-like vocabulary in test_original_tokenization.py.
    tokenizer.legacy = tokenizer.init_kwargs["legacy"] = True  # the attribute is read, init_kwargs is saved
    tokenizer.save_pretrained(folder)
    return folder


def legacy_tokenizer_spec(spec: dict) -> dict:
    """A tokenizer.json spec made like older llava-hf / transformers<4.34 ones: normalizers Prepend("▁") +
    Replace(" ", "▁") and no pre-tokenizer, which prepends "▁" to every piece between special tokens.
    Changes `spec` in place and returns it."""
    spec["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ],
    }
    spec["pre_tokenizer"] = None
    return spec


def tiny_config_kwargs(vocab_size: int = 704, image_token_id: int = 700, **overrides) -> dict:
    """Keyword arguments of a tiny ShareGPT4VConfig: CLIP at 336/14 (576 image tokens), hidden sizes 32."""
    kwargs = dict(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=336,
            patch_size=14,
            projection_dim=32,
        ),
        text_config=dict(
            model_type="llama",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=vocab_size,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            pad_token_id=0,
        ),
        image_token_id=image_token_id,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.fixture
def tiny_config():
    from transformers_sharegpt4v import ShareGPT4VConfig

    return ShareGPT4VConfig(**tiny_config_kwargs())


@pytest.fixture
def tiny_model(tiny_config):
    from transformers_sharegpt4v import ShareGPT4VForCausalLM

    torch.manual_seed(0)
    return ShareGPT4VForCausalLM(tiny_config).eval()
