"""ShareGPT4VProcessor and its chat templates against an independent re-implementation of the original
ShareGPT4V / LLaVA-1.5 tokenization and labels, written here on `sentencepiece` directly.

The reference (docs/reference.md, "Prompts and labels"): the transformers-4.31 slow LLaMA tokenizer encodes every
stretch of text between special tokens with SentencePiece (dummy prefix "▁" each time), BOS first;
`tokenizer_image_token` splits the prompt on "<image>", tokenizes each piece on its own, keeps BOS only once
and puts the sentinel -200 between the pieces. `preprocess_v1` masks BOS and, per round (split on "</s>"),
`len(tokenize(instruction + " ASSISTANT: ")) - 2` tokens, advancing by `len(tokenize(round))`;
`preprocess_plain` masks `len(tokenize("<image>"))` tokens.
"""

import copy
import json
import random
import re

import numpy as np
import pytest
import sentencepiece as spm
import torch
from conftest import FIXTURE_IMAGES, legacy_tokenizer_spec, tiny_config_kwargs
from jinja2.exceptions import TemplateError
from no_plugin import run_without_plugin
from PIL import Image
from transformers import AutoProcessor, LlamaTokenizer

from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VImageProcessor, ShareGPT4VProcessor

IGNORE = -100
SENTINEL = -200
IMAGE_ID = 700  # tiny_config_kwargs(): image_token_id 700 = first id after the 700-piece test vocabulary
PAD_ID = 701
N = 576
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


# ----------------------------------------------------------------------------- independent reference


class OriginalLlamaTokenizer:
    """`tokenizer(text).input_ids` of the slow LlamaTokenizer of transformers 4.31, which ShareGPT4V trained with.

    With `legacy=False` (the released tokenizer_config.json) 4.31 turned "▁" into spaces, and the first piece of a
    stretch after a special token lost its "▁" (looked up again as a string, <unk> if missing); with `legacy=True`
    every stretch keeps SentencePiece's dummy prefix.
    """

    SPECIAL = {"<unk>": 0, "<s>": 1, "</s>": 2}

    def __init__(self, model_file, legacy: bool = True):
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.legacy = legacy

    def __call__(self, text: str) -> list[int]:
        if not self.legacy:
            text = "▁" + text.replace("▁", " ")
        ids = [1]
        for piece in re.split(r"(<unk>|<s>|</s>)", text):
            if piece in self.SPECIAL:
                ids.append(self.SPECIAL[piece])
            elif piece:
                first = not self.legacy and piece.startswith("▁")
                piece = piece[1:] if first else piece
                tokens = self.sp.encode(piece, out_type=str)
                if not (self.legacy or first or piece.startswith(" ")) and tokens and tokens[0].startswith("▁"):
                    tokens = ([tokens[0][1:]] if len(tokens[0]) > 1 else []) + tokens[1:]
                ids.extend(self.sp.piece_to_id(token) for token in tokens)
        return ids


def tokenizer_image_token(prompt: str, tokenizer: OriginalLlamaTokenizer) -> list[int]:
    """LLaVA's tokenizer_image_token: pieces tokenized separately, BOS once, -200 between pieces."""
    chunks = [tokenizer(chunk) for chunk in prompt.split("<image>")]
    ids = [chunks[0][0]]
    for index, chunk in enumerate(chunks):
        if index:
            ids.append(SENTINEL)
        ids.extend(chunk[1:])
    return ids


def expand(ids: list[int], image_value: int = IMAGE_ID) -> list[int]:
    out = []
    for token in ids:
        out.extend([image_value] * N if token == SENTINEL else [token])
    return out


def original_v1_prompt(turns: list[tuple[str, str]], system: str = SYSTEM) -> str:
    """conv_vicuna_v1.get_prompt() after preprocess_multimodal (the <image> moved to the front of its turn)."""
    ret = system + " "
    for index, (role, message) in enumerate(turns):
        if "<image>" in message:
            message = ("<image>\n" + message.replace("<image>", "").strip()).strip()
        ret += f"{role}: {message}" + (" " if index % 2 == 0 else "</s>")
    return ret


def original_v1_labels(conversation: str, tokenizer: OriginalLlamaTokenizer) -> tuple[list[int], list[int]]:
    """preprocess_v1 (SeparatorStyle.TWO) of one conversation: (input_ids, labels) before image expansion."""
    has_image = "<image>" in conversation
    encode = (lambda text: tokenizer_image_token(text, tokenizer)) if has_image else tokenizer
    input_ids = encode(conversation)
    target = list(input_ids)
    sep = " ASSISTANT: "
    cur_len = 1
    target[:cur_len] = [IGNORE] * cur_len
    for rou in conversation.split("</s>"):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        round_len = len(encode(rou))
        instruction_len = len(encode(parts[0])) - 2
        target[cur_len : cur_len + instruction_len] = [IGNORE] * instruction_len
        cur_len += round_len
    target[cur_len:] = [IGNORE] * (len(target) - cur_len)
    assert cur_len == len(input_ids), "the original code would report a tokenization mismatch here"
    return input_ids, target


def original_plain_labels(caption: str, tokenizer: OriginalLlamaTokenizer) -> tuple[list[int], list[int]]:
    """preprocess_plain: "<image>" + caption + "\\n", the first len(tokenize("<image>")) tokens ignored."""
    input_ids = tokenizer_image_token("<image>" + caption + "\n", tokenizer)
    masked = len(tokenizer_image_token("<image>", tokenizer))
    return input_ids, [IGNORE] * masked + input_ids[masked:]


def expanded_labels(ids: list[int], labels: list[int]) -> list[int]:
    out = []
    for token, label in zip(ids, labels, strict=True):
        out.extend([IGNORE] * N if token == SENTINEL else [label])
    return out


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def original(spm_model_file) -> OriginalLlamaTokenizer:
    return OriginalLlamaTokenizer(spm_model_file)


@pytest.fixture(scope="module")
def tokenizer(llama_tokenizer_dir):
    tokenizer = LlamaTokenizer.from_pretrained(llama_tokenizer_dir)
    assert ShareGPT4VProcessor.prepare_tokenizer(tokenizer) == 2
    return tokenizer


@pytest.fixture(scope="module")
def processor(tokenizer) -> ShareGPT4VProcessor:
    return ShareGPT4VProcessor(ShareGPT4VImageProcessor(), tokenizer)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in sorted(FIXTURE_IMAGES.glob("*.jpg"))]


def user(*parts) -> dict:
    return {
        "role": "user",
        "content": [{"type": "image"} if p is None else {"type": "text", "text": p} for p in parts],
    }


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def with_image(message: dict, image) -> dict:
    content = [dict(part, image=image) if part["type"] == "image" else part for part in message["content"]]
    return {**message, "content": content}


# ----------------------------------------------------------------------------- tokenizer and tokenization


def test_prepare_tokenizer_adds_image_and_pad_like_llava_hf(tokenizer):
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [IMAGE_ID, PAD_ID]
    assert tokenizer.pad_token_id == PAD_ID
    assert ShareGPT4VProcessor.prepare_tokenizer(tokenizer) == 0  # idempotent


PROMPTS = [
    SYSTEM + " USER: <image>\nWhat is in the image? ASSISTANT:",
    SYSTEM + " USER: <image>\nWhat is in the image? ASSISTANT: A dog is sitting on the grass.</s>USER: How many "
    "cats are there? ASSISTANT: 2 cats.</s>USER: Which colour? ASSISTANT:",
    SYSTEM + " USER: Answer with 1 digit: 3 + 4? ASSISTANT: 7</s>",  # no image
    SYSTEM + " USER: <image>\n<image>\nCompare the two images. ASSISTANT:",  # several images
    "USER: <image><image> left right<image>\n top ASSISTANT: 12 small circles</s>",
    SYSTEM + " USER: <image>\nDécris l'image, s'il te plaît: 日本語 ✓ 🙂 ASSISTANT: Ça va — 0.5 m² ☀</s>",
    "<image>The image shows a man ironing clothes on the back of a yellow taxi.\n",
    "<image> 3 boats on a calm lake\n",
    "  two leading spaces, a  double space and a trailing one <image>",
    "",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_ids_match_original_tokenization(processor, original, images, prompt):
    n_images = prompt.count("<image>")
    out = processor(images=images[:n_images] or None, text=prompt)
    assert out["input_ids"][0] == expand(tokenizer_image_token(prompt, original))
    assert out["attention_mask"][0] == [1] * len(out["input_ids"][0])


def test_lone_space_tokens_around_the_image(processor, tokenizer):
    ids = processor(images=[Image.new("RGB", (8, 8))], text="USER: <image>\nHi")["input_ids"][0]
    first, last = ids.index(IMAGE_ID), len(ids) - 1 - ids[::-1].index(IMAGE_ID)
    assert last - first + 1 == N
    assert tokenizer.convert_ids_to_tokens([ids[first - 1], ids[last + 1]]) == ["▁", "▁"]


def test_random_prompts_match_original_tokenization(processor, original):
    rng = random.Random(0)
    alphabet = ["a", "b", "USER", ":", " ", " ", "\n", "1", "23", "é", "日", "<image>", "</s>", "?", "ASSISTANT"]
    prompts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25))) for _ in range(300)]
    blank = Image.new("RGB", (4, 4))
    # Many prompts at once: also exercises batching (lists, no padding).
    out = processor(images=[[blank] * p.count("<image>") for p in prompts], text=prompts)
    for prompt, ids in zip(prompts, out["input_ids"], strict=True):
        assert ids == expand(tokenizer_image_token(prompt, original)), prompt


def test_legacy_tokenizer_json_pipeline_gives_the_same_ids(tokenizer, original, images):
    """llava-hf / transformers<4.34 tokenizer.json: normalizers Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer."""
    legacy = copy.deepcopy(tokenizer)
    spec = legacy_tokenizer_spec(json.loads(legacy.backend_tokenizer.to_str()))
    legacy._tokenizer = type(legacy.backend_tokenizer).from_str(json.dumps(spec))
    processor = ShareGPT4VProcessor(ShareGPT4VImageProcessor(), legacy)
    for prompt in PROMPTS:
        n_images = prompt.count("<image>")
        ids = processor(images=images[:n_images] or None, text=prompt)["input_ids"][0]
        assert ids == expand(tokenizer_image_token(prompt, original)), prompt


def test_whole_string_tokenizer_does_not_reproduce_the_original(llama_tokenizer_dir, spm_model_file):
    """With the released setting (legacy false), tokenizing the whole prompt loses the lone "▁" the original had
    after the image (it tokenized the piece after the image on its own)."""
    tokenizer = LlamaTokenizer.from_pretrained(llama_tokenizer_dir, legacy=False)
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    original = OriginalLlamaTokenizer(spm_model_file, legacy=False)
    prompt = "USER: <image>\nWhat? ASSISTANT: A dog</s>USER: Why? ASSISTANT:"
    expected = expand(tokenizer_image_token(prompt, original), image_value=IMAGE_ID)
    whole = tokenizer(prompt.replace("<image>", "<image>" * N)).input_ids
    assert whole != expected
    space = tokenizer.convert_tokens_to_ids("▁")
    assert expected[expected.index(IMAGE_ID) + N] == space  # the original has a lone "▁" after the image,
    assert whole[whole.index(IMAGE_ID) + N] != space  # the whole-string tokenizer does not


def test_add_special_tokens_and_no_double_bos(processor, original):
    assert processor(text="hello")["input_ids"][0] == original("hello")
    assert processor(text="hello", add_special_tokens=False)["input_ids"][0] == original("hello")[1:]
    assert processor(text="<s>hello")["input_ids"][0] == original("hello")


def test_decode(processor, images):
    out = processor(images=images[:1], text="USER: <image>\nWhat is in the image?")
    assert processor.decode(out["input_ids"][0], skip_special_tokens=True).endswith("What is in the image?")
    assert processor.batch_decode(out["input_ids"], skip_special_tokens=True)[0].startswith("USER:")


# ----------------------------------------------------------------------------- images, padding, truncation


def test_pixel_values_and_tensors(processor, images):
    out = processor(
        images=images[:2], text=["USER: <image>\nA", "USER: <image>\nB b"], padding=True, return_tensors="pt"
    )
    assert out["pixel_values"].shape == (2, 3, 336, 336)
    assert out["input_ids"].shape == out["attention_mask"].shape
    assert (out["input_ids"] == IMAGE_ID).sum().item() == 2 * N
    expected = ShareGPT4VImageProcessor()(images[:2], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(out["pixel_values"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding(processor, original, images, side):
    texts = ["USER: <image>\nShort?", "USER: <image>\nA much longer question with 12 words in it?"]
    out = processor(images=images[:2], text=texts, padding=True, padding_side=side, return_tensors="pt")
    rows = zip(texts, out["input_ids"].tolist(), out["attention_mask"].tolist(), strict=True)
    for row, (text, ids, mask) in enumerate(rows):
        expected = expand(tokenizer_image_token(text, original))
        n_pad = len(ids) - len(expected)
        assert (n_pad > 0) == (row == 0)  # only the shorter sample is padded
        pad, real = (ids[:n_pad], ids[n_pad:]) if side == "left" else (ids[len(expected) :], ids[: len(expected)])
        assert real == expected and pad == [PAD_ID] * n_pad
        assert mask == ([0] * n_pad + [1] * len(expected) if side == "left" else [1] * len(expected) + [0] * n_pad)
    multiple = processor(images=images[:1], text=texts[:1], padding=True, pad_to_multiple_of=64, return_tensors="pt")
    assert multiple["input_ids"].shape[1] % 64 == 0


def test_left_padded_batched_generation_matches_single(tiny_model, processor, images):
    texts = ["USER: <image>\nWhat? ASSISTANT:", "USER: <image>\nWhat is shown in this picture, in detail? ASSISTANT:"]
    batch = processor(images=images[:2], text=texts, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        batched = tiny_model.generate(**batch, max_new_tokens=4, do_sample=False)[:, batch["input_ids"].shape[1] :]
        for row, text in enumerate(texts):
            single = processor(images=images[row : row + 1], text=text, return_tensors="pt")
            alone = tiny_model.generate(**single, max_new_tokens=4, do_sample=False)[:, single["input_ids"].shape[1] :]
            assert batched[row].tolist() == alone[0].tolist()


def test_truncation_cuts_text_after_the_image(processor, original, images):
    text = "USER: <image>\n" + "red green blue " * 40
    full = expand(tokenizer_image_token(text, original))
    out = processor(images=images[:1], text=text, truncation=True, max_length=N + 20)
    assert out["input_ids"][0] == full[: N + 20]


def test_truncation_never_cuts_an_image(processor, original, images):
    text = "USER: <image>\nred green blue"
    full = expand(tokenizer_image_token(text, original))
    start = full.index(IMAGE_ID)
    out = processor(images=images[:1], text=text, truncation=True, max_length=start + 10)
    assert out["input_ids"][0] == full[: start + N]  # kept to the end of the image
    long_prefix = "red green blue " * 30 + "<image>\nend"
    full = expand(tokenizer_image_token(long_prefix, original))
    out = processor(images=images[:1], text=long_prefix, truncation=True, max_length=10, padding="max_length")
    ids = out["input_ids"][0]
    assert ids.count(IMAGE_ID) == N and ids == full[: full.index(IMAGE_ID) + N]


def test_truncation_counting_the_image_as_one_like_the_original(processor, original, images):
    text = "USER: <image>\n" + "small large circle square " * 30
    ids = tokenizer_image_token(text, original)
    for max_length in (12, 50, 2048):
        out = processor(images=images[:1], text=text, truncation=True, max_length=max_length, count_image_as_one=True)
        assert out["input_ids"][0] == expand(ids[:max_length])  # the original: truncate, then expand


def test_truncation_defaults_to_model_max_length(tokenizer, original, images):
    processor = ShareGPT4VProcessor(ShareGPT4VImageProcessor(), copy.deepcopy(tokenizer))
    processor.tokenizer.model_max_length = N + 5
    text = "USER: <image>\n" + "red green blue " * 40
    out = processor(images=images[:1], text=text, truncation=True)
    assert out["input_ids"][0] == expand(tokenizer_image_token(text, original))[: N + 5]
    with pytest.raises(ValueError, match="padding='max_length' needs `max_length`"):
        processor(text=["a", "b c"], padding="max_length")


# ----------------------------------------------------------------------------- errors


def test_image_count_mismatch_names_counts_and_sample(processor, images):
    with pytest.raises(ValueError, match=r"Sample 0: .* 2 '<image>' placeholder\(s\) .* 1 image"):
        processor(images=images[:1], text="<image> and <image>")
    with pytest.raises(ValueError, match=r"Sample 1: .* 1 '<image>' placeholder\(s\) but 2 image"):
        processor(images=[[images[0]], images[1:3]], text=["<image> a", "<image> b"])
    with pytest.raises(ValueError, match=r"Sample 1: .* 1 '<image>' placeholder\(s\) but 0 images"):
        processor(text=["no image", "<image> b"])
    with pytest.raises(ValueError, match=r"3 '<image>' placeholder\(s\) in total but 2 image"):
        processor(images=images[:2], text=["<image> a", "<image><image> b"])


def test_other_errors(processor, tokenizer, images, llama_tokenizer_dir):
    with pytest.raises(ValueError, match="needs `text`"):
        processor(images=images[:1])
    with pytest.raises(ValueError, match="Sample 1: `text` must be a string"):
        processor(text=["ok", 3])
    with pytest.raises(ValueError, match="different lengths; pass `padding=True`"):
        processor(text=["a", "a b c d"], return_tensors="pt")
    with pytest.raises(ValueError, match="has no '<image>' token.*prepare_tokenizer"):
        ShareGPT4VProcessor(ShareGPT4VImageProcessor(), LlamaTokenizer.from_pretrained(llama_tokenizer_dir))
    wrong = ShareGPT4VConfig(**tiny_config_kwargs(image_token_id=701))
    with pytest.raises(ValueError, match="id is 700 but the model config has image_token_id=701"):
        ShareGPT4VProcessor.from_model_config(wrong, tokenizer)
    with pytest.raises(TemplateError, match="Images are only supported in user messages"):
        processor.apply_chat_template([user("hi"), {"role": "assistant", "content": [{"type": "image"}]}])


def test_from_model_config(tokenizer, tiny_config, tiny_model, images):
    processor = ShareGPT4VProcessor.from_model_config(ShareGPT4VConfig(**tiny_config_kwargs()), tokenizer)
    assert processor.image_seq_length == tiny_config.image_seq_length == N
    messages = [with_image(user(None, "What is this?"), images[0])]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = tiny_model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape


# ----------------------------------------------------------------------------- chat templates


def test_vicuna_v1_text(processor):
    render = processor.apply_chat_template
    messages = [user("What is in the image?", None), assistant("A dog."), user("And now?"), assistant("2 cats")]
    assert render(messages) == (
        "<s>"
        + SYSTEM
        + " USER: <image>\nWhat is in the image? ASSISTANT: A dog.</s>USER: And now? ASSISTANT: 2 cats</s>"
    )
    assert render(messages[:1], add_generation_prompt=True) == (
        "<s>" + SYSTEM + " USER: <image>\nWhat is in the image? ASSISTANT:"
    )
    system = {"role": "system", "content": "You are a captioner."}
    assert render([system, *messages[:1]], add_generation_prompt=True) == (
        "<s>You are a captioner. USER: <image>\nWhat is in the image? ASSISTANT:"
    )
    strings = [{"role": "user", "content": "  Describe it.\n<image>  "}, {"role": "assistant", "content": "Ok"}]
    assert render(strings) == "<s>" + SYSTEM + " USER: <image>\nDescribe it. ASSISTANT: Ok</s>"
    assert render([user(None, None, "Compare.")], add_generation_prompt=True).endswith(
        " USER: <image>\n<image>\nCompare. ASSISTANT:"
    )
    assert render([user(None)], add_generation_prompt=True).endswith(" USER: <image> ASSISTANT:")
    assert render([user("no image here")], add_generation_prompt=True).endswith(" USER: no image here ASSISTANT:")


def test_plain_text(processor):
    messages = [
        {"role": "system", "content": "ignored"},
        user(None, "Write a terse but informative summary of the picture."),
        assistant("A calm lake with boats."),
    ]
    assert processor.apply_chat_template(messages, chat_template="plain") == "<s><image>A calm lake with boats.\n"
    assert processor.apply_chat_template(messages[:2], chat_template="plain") == "<s><image>"


def test_named_templates(processor):
    assert set(processor.chat_template) == {"default", "vicuna_v1", "plain"}
    assert processor.chat_template["default"] == processor.chat_template["vicuna_v1"]
    for template in processor.chat_template.values():
        assert re.search(r"\{%-?\s*generation\s*-?%\}", template)


V1_CONVERSATIONS = [
    # (turns in the original LLaVA format, messages)
    (
        [
            ("USER", "<image>\nWhat is in the image?"),
            ("ASSISTANT", "A dog is sitting on the grass next to a red ball."),
        ],
        [user(None, "What is in the image?"), assistant("A dog is sitting on the grass next to a red ball.")],
    ),
    (
        [
            ("USER", "How many cats are there?\n<image>"),
            ("ASSISTANT", "2"),
            ("USER", "Décris l'image: 日本語 ✓"),
            ("ASSISTANT", "Ça va — deux chats 🙂 sur une couverture rose."),
            ("USER", "Answer the question using a single word or phrase. Left or right?"),
            ("ASSISTANT", "\nleft"),
        ],
        [
            user("How many cats are there?", None),
            assistant("2"),
            user("Décris l'image: 日本語 ✓"),
            assistant("Ça va — deux chats 🙂 sur une couverture rose."),
            user("Answer the question using a single word or phrase. Left or right?"),
            assistant("\nleft"),
        ],
    ),
    (  # text-only (the original's `has_image=False` branch)
        [("USER", "What is 3 + 4?"), ("ASSISTANT", "7"), ("USER", "Times 2?"), ("ASSISTANT", " 14, with a space")],
        [user("What is 3 + 4?"), assistant("7"), user("Times 2?"), assistant(" 14, with a space")],
    ),
]


@pytest.mark.parametrize("turns, messages", V1_CONVERSATIONS)
def test_vicuna_v1_labels_match_original(processor, original, images, turns, messages):
    conversation = original_v1_prompt(turns)
    ids, labels = original_v1_labels(conversation, original)
    messages = [with_image(m, images[0]) if m["role"] == "user" else m for m in messages]
    assert processor.apply_chat_template(messages) == "<s>" + conversation
    out = processor.build_labels(messages)
    assert out["input_ids"][0].tolist() == expand(ids)
    assert out["labels"][0].tolist() == expanded_labels(ids, labels)
    assert ("pixel_values" in out) == ("<image>" in conversation)


def test_vicuna_v1_custom_system_labels_match_original(processor, original, images):
    turns = [("USER", "<image>\nCaption it."), ("ASSISTANT", "A taxi.")]
    ids, labels = original_v1_labels(original_v1_prompt(turns, system="Be brief."), original)
    messages = [{"role": "system", "content": "Be brief."}, with_image(user(None, "Caption it."), images[0])]
    out = processor.build_labels([*messages, assistant("A taxi.")])
    assert out["labels"][0].tolist() == expanded_labels(ids, labels)


@pytest.mark.parametrize(
    "caption", ["A calm lake with boats.", "3 boats on a lake, 日本 ✓", " leading space", "\nnewline"]
)
def test_plain_labels_match_original(processor, original, images, caption):
    ids, labels = original_plain_labels(caption, original)
    messages = [with_image(user(None, "Describe the image."), images[1]), assistant(caption)]
    out = processor.build_labels(messages, chat_template="plain")
    assert out["input_ids"][0].tolist() == expand(ids)
    assert out["labels"][0].tolist() == expanded_labels(ids, labels)


def test_batched_labels_with_padding(processor, original, images):
    conversations = [
        [with_image(user(None, "What is in the image?"), images[0]), assistant("A dog.")],
        [user("Text only, longer question with more words?"), assistant("Yes, 12.")],
    ]
    references = [
        original_v1_labels(
            original_v1_prompt([("USER", "<image>\nWhat is in the image?"), ("ASSISTANT", "A dog.")]), original
        ),
        original_v1_labels(
            original_v1_prompt([("USER", "Text only, longer question with more words?"), ("ASSISTANT", "Yes, 12.")]),
            original,
        ),
    ]
    out = processor.build_labels(conversations)
    for row, (ids, labels) in enumerate(references):
        n = len(expand(ids))
        assert out["labels"][row, :n].tolist() == expanded_labels(ids, labels)
        assert (out["labels"][row, n:] == IGNORE).all() and (out["input_ids"][row, n:] == PAD_ID).all()
    assert out["pixel_values"].shape == (1, 3, 336, 336)


def test_assistant_masks_through_apply_chat_template(processor, original, images):
    turns = [("USER", "<image>\nWhat is in the image?"), ("ASSISTANT", "2 cats")]
    ids, labels = original_v1_labels(original_v1_prompt(turns), original)
    messages = [with_image(user(None, "What is in the image?"), images[0]), assistant("2 cats")]
    out = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="np"
    )
    expected_mask = [int(label != IGNORE) for label in expanded_labels(ids, labels)]
    assert out["assistant_masks"][0].tolist() == expected_mask
    assert out["pixel_values"].shape == (1, 3, 336, 336)


# ----------------------------------------------------------------------------- TRL


def test_trl_collator_assistant_only_loss_matches_original(processor, original, images):
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    assert has_generation_markers(processor.chat_template)
    assert is_chat_template_stop_token_trained(processor)
    examples = [
        {
            "images": [images[0]],
            "messages": [
                {"role": "user", "content": "What is in the image?"},
                {"role": "assistant", "content": "A dog is sitting on the grass."},
                {"role": "user", "content": "How many?"},
                {"role": "assistant", "content": "1"},
            ],
        },
        {
            "images": [images[2]],
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
        },
    ]
    references = [
        original_v1_labels(
            original_v1_prompt(
                [
                    ("USER", "<image>\nWhat is in the image?"),
                    ("ASSISTANT", "A dog is sitting on the grass."),
                    ("USER", "How many?"),
                    ("ASSISTANT", "1"),
                ]
            ),
            original,
        ),
        original_v1_labels(original_v1_prompt([("USER", "<image>\nHi"), ("ASSISTANT", "Hello.")]), original),
    ]
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)
    batch = collator(examples)
    for row, (ids, labels) in enumerate(references):
        n = len(expand(ids))
        assert batch["input_ids"][row, :n].tolist() == expand(ids)
        assert batch["labels"][row, :n].tolist() == expanded_labels(ids, labels)
        assert (batch["labels"][row, n:] == IGNORE).all()
    assert batch["pixel_values"].shape == (2, 3, 336, 336)

    plain = DataCollatorForVisionLanguageModeling(
        processor, assistant_only_loss=True, chat_template=processor.chat_template["plain"], max_length=N + 8
    )
    caption = "The image shows a man ironing clothes on the back of a yellow taxi in a busy city street."
    out = plain(
        [
            {
                "images": [images[2]],
                "messages": [{"role": "user", "content": "Describe."}, {"role": "assistant", "content": caption}],
            }
        ]
    )
    ids, labels = original_plain_labels(caption, original)
    assert out["labels"][0].tolist() == expanded_labels(ids, labels)[: N + 8]


def test_trl_collator_truncates_like_the_original_with_count_image_as_one(tokenizer, original, images):
    """The original: 2048 text ids with the image as one, then expanded (up to 2048 + 575 positions)."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    processor = ShareGPT4VProcessor(ShareGPT4VImageProcessor(), tokenizer)
    processor.text_kwargs = {"count_image_as_one": True}  # processor-level default, below the call's kwargs
    answer = "There are two cats lying on a pink blanket. " * 10
    turns = [("USER", "<image>\nHow many cats are there?"), ("ASSISTANT", answer)]
    ids, labels = original_v1_labels(original_v1_prompt(turns), original)
    max_length = len(ids) - 20
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True, max_length=max_length)
    example = {"images": [images[1]], "messages": [{"role": "user", "content": "How many cats are there?"}]}
    example["messages"].append({"role": "assistant", "content": answer})
    batch = collator([example])
    assert batch["input_ids"][0].tolist() == expand(ids[:max_length])
    assert batch["labels"][0].tolist() == expanded_labels(ids[:max_length], labels[:max_length])


def test_sft_trainer_trains_on_the_original_labels(processor, original, images, tiny_model, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [
        {
            "images": [images[i]],
            "messages": [
                {"role": "user", "content": "What is in the image?"},
                {"role": "assistant", "content": f"A dog {i}."},
            ],
        }
        for i in range(2)
    ]
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        assistant_only_loss=True,
        max_length=None,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
    )
    trainer = SFTTrainer(
        model=tiny_model, args=args, train_dataset=Dataset.from_list(rows), processing_class=processor
    )
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    for row in range(2):
        turns = [("USER", "<image>\nWhat is in the image?"), ("ASSISTANT", f"A dog {row}.")]
        ids, labels = original_v1_labels(original_v1_prompt(turns), original)
        assert batch["labels"][row].tolist() == expanded_labels(ids, labels)
    assert np.isfinite(trainer.train().training_loss)


# ----------------------------------------------------------------------------- saving and remote code


def test_save_pretrained_layout_and_auto_processor(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_sharegpt4v.ShareGPT4VProcessor"
    assert config["image_seq_length"] == N and config["image_token"] == "<image>"
    # the processor's module and every unit file it imports (tokenization_sharegpt4v.py) travel with it
    code_files = ("processing_sharegpt4v.py", "tokenization_sharegpt4v.py", "image_processing_sharegpt4v.py")
    for name in (*code_files, "chat_template.jinja"):
        assert (tmp_path / name).is_file(), name
    assert {p.name for p in (tmp_path / "additional_chat_templates").iterdir()} == {"vicuna_v1.jinja", "plain.jinja"}
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, ShareGPT4VProcessor)
    assert loaded.chat_template == processor.chat_template
    text = "USER: <image>\nWhat? ASSISTANT:"
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    assert loaded(images=[image], text=text)["input_ids"] == processor(images=[image], text=text)["input_ids"]


def test_remote_code_without_plugin(processor, images, tiny_model, tmp_path):
    """A checkpoint folder (model + processor) used with transformers alone: load, template, masks, generate."""
    saved = tmp_path / "checkpoint"
    tiny_model.save_pretrained(saved)
    processor.save_pretrained(saved)
    image_path = sorted(FIXTURE_IMAGES.glob("*.jpg"))[0]
    messages = [
        {"role": "user", "content": [{"type": "image", "path": str(image_path)}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A dog."}]},
    ]
    code = f"""
        import json
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        processor = AutoProcessor.from_pretrained({str(saved)!r}, trust_remote_code=True)
        model = AutoModelForImageTextToText.from_pretrained({str(saved)!r}, trust_remote_code=True).eval()
        assert "transformers_sharegpt4v" not in sys.modules
        out = processor.apply_chat_template(
            {messages!r}, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
        )
        plain = processor.apply_chat_template({messages!r}, chat_template="plain")
        prompt = processor.apply_chat_template({messages[:1]!r}, add_generation_prompt=True, tokenize=True,
            return_dict=True, return_tensors="pt")
        with torch.no_grad():
            generated = model.generate(**prompt, max_new_tokens=3, do_sample=False)
        print(json.dumps({{"cls": type(processor).__module__, "ids": out["input_ids"][0].tolist(),
            "mask": out["assistant_masks"][0].tolist(), "pixels": float(out["pixel_values"].double().sum()),
            "plain": plain, "generated": generated[0].tolist()}}))
    """
    result = run_without_plugin(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["cls"].startswith("transformers_modules.")
    image = Image.open(image_path)
    messages[0]["content"][0] = {"type": "image", "image": image}
    expected = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    assert got["ids"] == expected["input_ids"][0].tolist()
    assert got["mask"] == expected["assistant_masks"][0].tolist()
    assert np.isclose(got["pixels"], float(expected["pixel_values"].double().sum()), rtol=1e-9)
    assert got["plain"] == "<s><image>A dog.\n"
    prompt = processor.apply_chat_template(
        messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        generated = tiny_model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert got["generated"] == generated[0].tolist()
