"""The ids and labels the original ShareGPT4V code fed its model, with a tokenizer that has LLaMA-2's quirks.

Reference: `tests/fixtures/llama_tokenizer/expected_ids.json`, written by `make_expected_ids.py` under
transformers 4.31.0 (the original's pinned version, slow SentencePiece LlamaTokenizer) for 304 conversations
and both `legacy` settings. The tokenizer (`tokenizer.model`, made by `make_tokenizer_model.py`) has LLaMA-2's
structure: whitespace-only pieces at low ids scored -1e9, byte fallback, split digits, a "USER" piece; its
`tokenizer_config.json` is the released one (`legacy: false`). Every path a LLaMA tokenizer takes into the
project is checked against it: the processor, the training collator, `convert` of a released checkpoint (and
its tokenizer.json alone), the llava-hf export through LlavaProcessor, and `init` from a Vicuna-layout folder.
"""

import json
import shutil
from functools import cache
from pathlib import Path

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import BPE
from transformers import AutoProcessor, LlavaProcessor
from transformers.tokenization_utils_base import generate_merges

from transformers_sharegpt4v import ShareGPT4VImageProcessor, ShareGPT4VProcessor
from transformers_sharegpt4v.corpora.records import conversations_to_messages
from transformers_sharegpt4v.llama_tokenizer import load_llama_tokenizer, original_prompt_ids
from transformers_sharegpt4v.training.collator import ShareGPT4VDataCollator

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "llama_tokenizer"
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")
SENTINEL, IGNORE = -200, -100
DEFAULT_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


@cache
def reference() -> dict:
    data = json.loads((FIXTURE / "expected_ids.json").read_text(encoding="utf-8"))
    assert data["transformers"] == "4.31.0" and len(data["cases"]) >= 300
    return data


def tokenizer_folder(root: Path, legacy: bool) -> Path:
    """The released tokenizer files (tokenizer.model, no tokenizer.json), with `legacy` as asked."""
    root.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(FIXTURE / name, root / name)
    config = json.loads((root / "tokenizer_config.json").read_text())
    assert config["legacy"] is False  # as released
    config["legacy"] = legacy
    (root / "tokenizer_config.json").write_text(json.dumps(config))
    return root


def case_messages(case: dict) -> list[dict]:
    """A corpus record as the training rows hold it (corpora's conversion), with its system prompt if any."""
    messages = conversations_to_messages(case["conversations"])
    if case.get("template", "vicuna_v1") == "vicuna_v1" and case["system"] != DEFAULT_SYSTEM:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": case["system"]}]})
    return messages


def n_images(messages: list[dict]) -> int:
    return sum(part["type"] == "image" for m in messages if isinstance(m["content"], list) for part in m["content"])


def expand_ids(ids: list[int], image_token_id: int, n: int) -> list[int]:
    return [x for i in ids for x in ([image_token_id] * n if i == SENTINEL else [i])]


def expand_labels(ids: list[int], labels: list[int], n: int) -> list[int]:
    return [x for i, label in zip(ids, labels, strict=True) for x in ([IGNORE] * n if i == SENTINEL else [label])]


def prompts(case: dict) -> list[tuple[str, list[dict], bool]]:
    """(mode, messages, add_generation_prompt) of each prompt the reference has for the case."""
    messages = case_messages(case)
    out = [("train", messages, False)]
    if case.get("template", "vicuna_v1") == "vicuna_v1":
        out.append(("generate", messages[:-1], True))
    return out


IMAGE = Image.new("RGB", (48, 32), (200, 30, 30))


@pytest.fixture(scope="module", params=[False, True], ids=["legacy-false", "legacy-true"])
def legacy(request) -> bool:
    return request.param


@pytest.fixture(scope="module")
def processor(legacy, tmp_path_factory) -> ShareGPT4VProcessor:
    tokenizer = load_llama_tokenizer(tokenizer_folder(tmp_path_factory.mktemp("tok"), legacy))
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    return ShareGPT4VProcessor(image_processor=ShareGPT4VImageProcessor(), tokenizer=tokenizer)


def assert_ids_equal_reference(render, legacy: bool, image_token_id: int, n_tokens: int = 576) -> None:
    """`render(case, messages, generation) -> ids` gives the reference ids for every case and prompt."""
    expected = reference()["expected"][f"legacy={legacy}"]
    mismatches = []
    for case in reference()["cases"]:
        for mode, messages, generation in prompts(case):
            want = expand_ids(expected[case["id"]][mode]["input_ids"], image_token_id, n_tokens)
            got = render(case, messages, generation)
            if got != want:
                mismatches.append(f"{case['id']}/{mode}: {expected[case['id']][mode]['text']!r}")
    assert not mismatches, f"{len(mismatches)} prompts differ from transformers 4.31, e.g. {mismatches[:3]}"


def plugin_render(processor):
    """`render` for `assert_ids_equal_reference`: the plugin processor's chat template, then `__call__`."""

    def render(case, messages, generation):
        text = processor.apply_chat_template(
            messages, chat_template=case.get("template", "vicuna_v1"), add_generation_prompt=generation
        )
        return processor(text=text, images=[IMAGE] * n_images(messages) or None)["input_ids"][0]

    return render


def test_fixture_tokenizer_has_the_llama_quirks():
    """The merge-order quirk is real in the fixture: BPE merges ordered by id differ from SentencePiece."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(FIXTURE / "tokenizer.model"))
    whitespace = [
        i for i in range(sp.get_piece_size()) if len(sp.id_to_piece(i)) > 1 and set(sp.id_to_piece(i)) == {"▁"}
    ]
    assert len(whitespace) == 15 and max(whitespace) < 300
    assert all(sp.get_score(i) == -1e9 for i in whitespace)
    assert sp.piece_to_id("USER") != sp.unk_id() and sp.piece_to_id("▁USER") == sp.unk_id()
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    by_id = Tokenizer(BPE(vocab=vocab, merges=generate_merges(vocab), byte_fallback=True, fuse_unk=True))
    text = "▁Hello▁▁world"
    assert by_id.encode(text).ids != sp.encode("Hello  world")


def test_tokenizer_from_tokenizer_model_merges_like_sentencepiece(tmp_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(FIXTURE / "tokenizer.model"))
    tokenizer = load_llama_tokenizer(tokenizer_folder(tmp_path, legacy=False))
    texts = {turn["value"].replace("<image>", "") for case in reference()["cases"] for turn in case["conversations"]}
    texts |= {"Hello  world", "  two leading", "trailing  ", "a\t\tb", "x" + " " * 20 + "y", ""}
    texts = sorted(t for t in texts if not any(s in t for s in ("<s>", "</s>", "<unk>")))
    # A text that starts with a space: the Metaspace pre-tokenizer adds no "▁" before a text that already
    # starts with one, SentencePiece always does (the processor and the llava-hf template add it themselves).
    texts = [t for t in texts if not t.startswith(" ")]
    for text in texts:
        assert tokenizer(text).input_ids == [sp.bos_id(), *sp.encode(text)], text
    assert tokenizer.legacy is False


def test_independent_restatement_equals_transformers_431(legacy):
    """`original_prompt_ids` (sentencepiece only; the export checks itself against it) equals the reference."""
    for case_id, modes in reference()["expected"][f"legacy={legacy}"].items():
        for want in modes.values():
            assert original_prompt_ids(FIXTURE / "tokenizer.model", want["text"], legacy) == want["input_ids"], case_id


def test_processor_ids_equal_transformers_431(processor, legacy):
    assert_ids_equal_reference(plugin_render(processor), legacy, processor.image_token_id)


def test_collator_labels_equal_transformers_431(processor, legacy):
    """The training collator's ids and labels, for every conversation the original does not drop."""
    expected = reference()["expected"][f"legacy={legacy}"]
    collators = {name: ShareGPT4VDataCollator(processor, chat_template=name) for name in ("vicuna_v1", "plain")}
    checked = 0
    for case in reference()["cases"]:
        want = expected[case["id"]]["train"]
        messages = case_messages(case)
        row = {"id": case["id"], "messages": messages, "images": [IMAGE] * n_images(messages)}
        batch = collators[case.get("template", "vicuna_v1")]([row])
        labels = batch["labels"][0].tolist()
        assert batch["input_ids"][0].tolist() == expand_ids(want["input_ids"], processor.image_token_id, 576)
        if want["ignored"] or case.get("literal_special"):
            # The original drops these samples whole (its round count fails on a literal " ASSISTANT: " or
            # "</s>" in the text); the plugin supervises their answers (docs/reference.md, "Prompts and labels").
            assert any(label != IGNORE for label in labels), case["id"]
            continue
        assert labels == expand_labels(want["input_ids"], want["labels"], 576), case["id"]
        checked += 1
    assert checked >= 260


def write_released_llama_like(root: Path) -> tuple[Path, Path]:
    """A tiny checkpoint in the released layout whose tokenizer is the fixture's, as released (legacy false)."""
    import sentencepiece as spm
    from test_conversion import write_released_checkpoint

    vocab = spm.SentencePieceProcessor(model_file=str(FIXTURE / "tokenizer.model")).get_piece_size()
    llm_dir, vit_dir = write_released_checkpoint(root, FIXTURE / "tokenizer.model", vocab_size=vocab)
    tokenizer_folder(llm_dir, legacy=False)
    assert not (llm_dir / "tokenizer.json").exists()
    return llm_dir, vit_dir


@pytest.fixture(scope="module")
def released_tiny(tmp_path_factory) -> tuple[Path, Path]:
    return write_released_llama_like(tmp_path_factory.mktemp("released"))


def test_converted_checkpoint_gives_the_original_ids(released_tiny, tmp_path):
    import sentencepiece as spm

    from transformers_sharegpt4v.conversion import convert_checkpoint

    out = convert_checkpoint(released_tiny[0], tmp_path / "plugin")
    assert json.loads((out / "tokenizer_config.json").read_text())["legacy"] is False
    # the saved tokenizer.json alone (what other tools read) has SentencePiece's merge order
    sp = spm.SentencePieceProcessor(model_file=str(FIXTURE / "tokenizer.model"))
    alone = Tokenizer.from_file(str(out / "tokenizer.json"))
    for text in ("Hello  world", "three   spaces", "| a  |   b |", "x" + " " * 17 + "y"):
        assert alone.encode(text).ids == [sp.bos_id(), *sp.encode(text)], text

    processor = AutoProcessor.from_pretrained(out)

    assert_ids_equal_reference(plugin_render(processor), False, processor.image_token_id)


def test_llava_hf_export_gives_the_original_ids(released_tiny, tmp_path, caplog):
    """LlavaProcessor + the export's chat template + its tokenizer.json, with nothing of the plugin."""
    from transformers_sharegpt4v.conversion import convert_checkpoint

    llm_dir, vit_dir = released_tiny
    with caplog.at_level("WARNING"):
        out = convert_checkpoint(llm_dir, tmp_path / "hf", to="llava-hf", vision_tower=vit_dir)
    assert "does not reproduce the original token ids" not in caplog.text
    processor = LlavaProcessor.from_pretrained(out)
    v1_cases = {case["id"] for case in reference()["cases"] if case.get("template", "vicuna_v1") == "vicuna_v1"}

    def render(case, messages, generation):
        # The export ships vicuna_v1 only (plain is a training format). Text right after a literal "</s>" or "<s>"
        # inside a message cannot get 4.31's pieces from a tokenizer.json (only "USER" after "</s>" does).
        if case["id"] not in v1_cases or case.get("literal_special"):
            return expand_ids(
                reference()["expected"]["legacy=False"][case["id"]]["generate" if generation else "train"][
                    "input_ids"
                ],
                processor.image_token_id,
                576,
            )
        text = processor.apply_chat_template(messages, add_generation_prompt=generation)
        return list(processor(text=text, images=[IMAGE] * n_images(messages) or None)["input_ids"][0])

    assert_ids_equal_reference(render, False, processor.image_token_id)


def test_init_from_vicuna_layout_gives_the_original_ids(tmp_path):
    """`sharegpt4v init --llm` from a folder laid out like lmsys/vicuna-7b-v1.5 (tokenizer.model, no
    tokenizer.json, legacy false): the new checkpoint's processor feeds the original ids."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from transformers_sharegpt4v.training.init_model import init_checkpoint

    llm = tmp_path / "vicuna"
    tokenizer_folder(llm, legacy=False)
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_file=str(FIXTURE / "tokenizer.model")).get_piece_size()
    torch.manual_seed(0)
    text_config = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    LlamaForCausalLM(text_config).save_pretrained(llm)
    vit = tmp_path / "clip"
    vision_config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=336, patch_size=14
    )
    CLIPVisionModel(vision_config).save_pretrained(vit)
    out = init_checkpoint(tmp_path / "init", vision=str(vit), llm=str(llm))
    processor = AutoProcessor.from_pretrained(out)

    assert_ids_equal_reference(plugin_render(processor), False, processor.image_token_id)
