"""Test fixtures: tiny models with the real 576-token geometry and a LLaMA-style tokenizer, all built in
code (`transformers_sharegpt4v.testing_utils`), and the four photos in tests/fixtures/images. Nothing here
touches the network or reads a file outside the repository."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The console scripts the tests run (sharegpt4v, accelerate, trl) are those of this interpreter's environment,
# also when its python runs pytest without the venv activated (as activation would, its bin folder first).
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from transformers_sharegpt4v.testing_utils import (  # noqa: E402, F401 (tiny_config_kwargs: imported by the tests)
    llama_tokenizer,
    tiny_config_kwargs,
    train_llama_sentencepiece,
)

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


@pytest.fixture(scope="session")
def spm_model_file(tmp_path_factory) -> Path:
    """Path of a LLaMA-style `tokenizer.model` (the released checkpoints ship one of these)."""
    return train_llama_sentencepiece(tmp_path_factory.mktemp("spm") / "tokenizer.model")


@pytest.fixture(scope="session")
def llama_tokenizer_dir(tmp_path_factory) -> Path:
    """A folder holding a plain LLaMA tokenizer (no `<image>` token), as Vicuna / ShareGPT4V ship it."""
    folder = tmp_path_factory.mktemp("llama_tokenizer")
    # legacy=True: this toy vocabulary has "▁USER" as one piece and no "USER" (testing_utils.TOKENIZER_LINES
    # says why that needs legacy); test_original_tokenization.py tests legacy=False on a LLaMA-2-like one.
    llama_tokenizer(folder, legacy=True)
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


@pytest.fixture
def tiny_config():
    from transformers_sharegpt4v import ShareGPT4VConfig

    return ShareGPT4VConfig(**tiny_config_kwargs())


@pytest.fixture
def tiny_model(tiny_config):
    from transformers_sharegpt4v import ShareGPT4VForCausalLM

    torch.manual_seed(0)
    return ShareGPT4VForCausalLM(tiny_config).eval()
