"""Evaluation: the paper's prompts (checked against strings written out from the original scripts), the model
side against plain `model.generate` / the model's own loss, the scoring rules, the local task YAMLs, and
lmms-eval runs on the fixture data (tests/fixtures/eval, built by its build_fixtures.py from the photos in
tests/fixtures/images). The lmms-eval tests skip where lmms-eval is not installed (`pip install .[eval]`)."""

import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from conftest import tiny_config_kwargs
from PIL import Image

from transformers_sharegpt4v.cli import main
from transformers_sharegpt4v.evaluation import BENCHMARKS, EvalModel, GenerationRequest, build_prompt, write_tasks
from transformers_sharegpt4v.evaluation.protocol import (
    circular_accuracy,
    extract_option_letter,
    mme_cognition,
    mme_perception,
    parse_yes_no,
)
from transformers_sharegpt4v.evaluation.report import format_markdown, format_report, report_rows
from transformers_sharegpt4v.evaluation.scoring import score_row

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EVAL_DATA = FIXTURES / "eval"
PHOTOS = FIXTURES / "images"
HAS_LMMS_EVAL = importlib.util.find_spec("lmms_eval") is not None
needs_lmms_eval = pytest.mark.skipif(not HAS_LMMS_EVAL, reason="lmms-eval is not installed (pip install .[eval])")

VICUNA = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
SHARE4V = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions."
)


def rows(name: str) -> list[dict]:
    return list(datasets.load_dataset("parquet", data_files=str(EVAL_DATA / f"{name}.parquet"), split="train"))


@pytest.fixture(scope="module")
def checkpoint(llama_tokenizer_dir, tmp_path_factory) -> Path:
    """A saved tiny ShareGPT4V checkpoint (model + processor)."""
    from transformers import LlamaTokenizer

    from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VForCausalLM, ShareGPT4VProcessor

    folder = tmp_path_factory.mktemp("eval_checkpoint")
    tokenizer = LlamaTokenizer.from_pretrained(llama_tokenizer_dir)
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    config = ShareGPT4VConfig(**tiny_config_kwargs())
    torch.manual_seed(0)
    ShareGPT4VProcessor.from_model_config(config, tokenizer).save_pretrained(folder)
    ShareGPT4VForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def evaluator(checkpoint) -> EvalModel:
    return EvalModel.from_pretrained(str(checkpoint), device="cpu")


def spy_on(function, calls: list):
    """`function`, appending the arguments of each call to `calls`."""

    @functools.wraps(function)
    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return function(*args, **kwargs)

    return spy


def watch_vision_tower(monkeypatch, model) -> list[torch.Tensor]:
    """The list that every image the model's vision tower encodes is appended to, from now on (generate's
    encoding before prefill and a plain forward both go through `get_image_features`)."""
    seen = []
    encode_images = model.model.get_image_features

    @functools.wraps(encode_images)  # generate reads its signature
    def spy(pixel_values, *args, **kwargs):
        seen.extend(pixel_values)
        return encode_images(pixel_values, *args, **kwargs)

    monkeypatch.setattr(model.model, "get_image_features", spy)
    return seen


# ------------------------------------------------------------------------------------------------ prompts


def test_question_texts_are_the_original_question_files():
    """One row per benchmark, its question written out by hand from the original scripts' rules."""
    mme = rows("mme")
    assert BENCHMARKS["mme"].prompt_text(mme[0]) == (
        "Is there a dog in this image?\nAnswer the question using a single word or phrase."
    )
    # two spaces before "Please answer yes or no." in some MME questions: removed too
    assert BENCHMARKS["mme"].prompt_text(mme[3]) == (
        "Are there five cats in the image?\nAnswer the question using a single word or phrase."
    )
    mmbench = rows("mmbench_en")
    assert BENCHMARKS["mmbench_en"].prompt_text(mmbench[0]) == (
        "What animal is in the image?\nA. dog\nB. cat\nC. horse\nD. bird\n"
        "Answer with the option's letter from the given choices directly."
    )
    # a hint goes first; the options stop at the first absent one (C, D are null here)
    assert BENCHMARKS["mmbench_en"].prompt_text(mmbench[3]) == (
        "Count the cats.\nHow many cats are there?\nA. two\nB. one\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert BENCHMARKS["mmbench_cn"].prompt_text(rows("mmbench_cn")[0]).endswith("\nD. bird\n请直接回答选项字母。")
    assert BENCHMARKS["seedbench"].prompt_text(rows("seedbench")[0]) == (
        "What is the dog doing?\nA. running\nB. sitting\nC. swimming\nD. flying\n"
        "Answer with the option's letter from the given choices directly."
    )
    sqa = rows("scienceqa_img")
    assert BENCHMARKS["scienceqa_img"].prompt_text(sqa[0]) == (
        "Which animal is shown?\nA. a dog\nB. a fish\nAnswer with the option's letter from the given choices directly."
    )
    assert BENCHMARKS["scienceqa_img"].prompt_text(sqa[1]) == (
        "Context: Look at the picture.\nHow many animals are in the picture?\nA. one\nB. two\nC. three\n"
        "Answer with the option's letter from the given choices directly."
    )
    # Q-Bench: LLaVA's model_vqa_qbench message, trailing newline kept, "N/A" options left out
    assert BENCHMARKS["qbench"].prompt_text(rows("qbench")[0]) == (
        "Is the dog in focus?\nChoose between one of the options as follows:\nA. Yes\nB. No\n"
    )
    assert BENCHMARKS["gqa"].prompt_text(rows("gqa")[0]) == (
        "What animal is this?\nAnswer the question using a single word or phrase."
    )
    assert BENCHMARKS["vqav2"].prompt_text(rows("vqav2")[1]) == (
        "How many cats are there?\nAnswer the question using a single word or phrase."
    )
    # TextVQA: capitalized question, the row's OCR tokens as they are; no OCR line when the row has none
    textvqa = rows("textvqa")
    assert BENCHMARKS["textvqa"].prompt_text(textvqa[0]) == (
        "What is the brand of this camera?\nReference OCR token: NYC, TAXI, Ford\n"
        "Answer the question using a single word or phrase."
    )
    assert BENCHMARKS["textvqa"].prompt_text(textvqa[1]) == (
        "What is written on the sign?\nAnswer the question using a single word or phrase."
    )
    assert BENCHMARKS["vizwiz"].prompt_text(rows("vizwiz")[0]) == (
        "What is this?\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n"
        "Answer the question using a single word or phrase."
    )
    assert BENCHMARKS["mmvet"].prompt_text(rows("mmvet")[0]) == "What is in the water?"
    assert BENCHMARKS["llava_bench"].prompt_text(rows("llava_bench")[0]) == "What is unusual about this image?"


def test_prompt_is_the_conversation_template_text():
    assert build_prompt("What is it?") == f"{VICUNA} USER: <image>\nWhat is it? ASSISTANT:"
    assert build_prompt("Q\n", conversation="share4v_v1") == f"{SHARE4V} USER: <image>\nQ\n ASSISTANT:"
    assert build_prompt("a <image> b <image>", num_images=2).endswith("USER: a <image> b <image> ASSISTANT:")
    assert build_prompt("no image", num_images=0) == f"{VICUNA} USER: no image ASSISTANT:"
    with pytest.raises(ValueError, match="1 '<image>' placeholder"):
        build_prompt("<image> x", num_images=2)
    with pytest.raises(ValueError, match="share4v_v1"):
        build_prompt("x", conversation="llava_v1")


def test_prompt_ids_equal_the_processors_chat_template(evaluator):
    """With a question that has no surrounding whitespace, the prompt tokenizes exactly as the processor's
    vicuna_v1 chat template (system message replaced for share4v_v1); with Q-Bench's trailing newline the
    template strips it and the original kept it: only the newline's token differs."""
    processor = evaluator.processor
    image = Image.open(PHOTOS / "waterview.jpg")

    def template_ids(question: str, system: str | None = None) -> list[int]:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        return processor(text=text, images=[image], add_special_tokens=False)["input_ids"][0]

    question = "Is this photo taken at a lake?\nAnswer the question using a single word or phrase."
    ours = evaluator.encode([build_prompt(question)], [[image]])["input_ids"][0].tolist()
    assert ours == template_ids(question)
    ours = evaluator.encode([build_prompt(question, conversation="share4v_v1")], [[image]])["input_ids"][0].tolist()
    assert ours == template_ids(question, SHARE4V)

    qbench = BENCHMARKS["qbench"].prompt_text(rows("qbench")[0])
    ours = evaluator.encode([build_prompt(qbench, conversation="share4v_v1")], [[image]])["input_ids"][0].tolist()
    stripped = template_ids(qbench, SHARE4V)
    first = next(i for i, (a, b) in enumerate(zip(ours, stripped, strict=False)) if a != b)
    assert ours[first] == processor.tokenizer.convert_tokens_to_ids("<0x0A>")
    assert ours[:first] + ours[first + 1 :] == stripped and first >= len(ours) - 4


# ------------------------------------------------------------------------------------------------ model side


def test_generate_is_model_generate_on_the_original_inputs(evaluator, monkeypatch):
    """Each answer equals `model.generate` on the processor's inputs for the hand-written prompt, greedy, decoded
    without special tokens and stripped; pixels padded to square or not as the options say."""
    processor, model = evaluator.processor, evaluator.model
    cats = Image.open(PHOTOS / "coco_twocat_000000039769.jpg")
    dog = Image.open(PHOTOS / "coco_dog_000000319154.jpg")
    requests = [
        GenerationRequest("How many cats?", [cats], {"max_new_tokens": 5}),
        GenerationRequest(
            "Q\n", [dog], {"max_new_tokens": 5, "conversation": "share4v_v1", "image_aspect_ratio": "original"}
        ),
        GenerationRequest("What animal is it?", [dog], {"max_new_tokens": 5}),
    ]
    expected_prompts = [
        f"{VICUNA} USER: <image>\nHow many cats? ASSISTANT:",
        f"{SHARE4V} USER: <image>\nQ\n ASSISTANT:",
        f"{VICUNA} USER: <image>\nWhat animal is it? ASSISTANT:",
    ]
    expected = []
    for prompt, request in zip(expected_prompts, requests, strict=True):
        pad = request.options.get("image_aspect_ratio", "pad") == "pad"
        inputs = processor(text=prompt, images=request.images, do_pad=pad, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        expected.append(
            processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        )

    seen = watch_vision_tower(monkeypatch, model)
    for share_prefix in (True, False):
        assert EvalModel(model, processor, share_prefix=share_prefix).generate(requests) == expected
    # the padded and the plain CLIP pixels of the dog photo (375x500) differ; each request got its own
    padded = processor.image_processor(dog, do_pad=True, return_tensors="pt")["pixel_values"][0]
    plain = processor.image_processor(dog, do_pad=False, return_tensors="pt")["pixel_values"][0]
    assert not torch.equal(padded, plain)
    assert sum(torch.equal(p, plain) for p in seen) == 2 and sum(torch.equal(p, padded) for p in seen) == 2


def test_batched_answers_equal_one_at_a_time(checkpoint, evaluator):
    photos = sorted(PHOTOS.glob("*.jpg"))
    questions = ["What is it?", "How many animals are in the picture, if any?", "Where?", "Describe the scene."]
    requests = [
        GenerationRequest(q, [Image.open(p)], {"max_new_tokens": 4}) for q, p in zip(questions, photos, strict=True)
    ]
    one = evaluator.generate(requests)
    batched = EvalModel(evaluator.model, evaluator.processor, batch_size=3).generate(requests)
    assert batched == one


def _fixture_requests(max_new_tokens: int) -> list[GenerationRequest]:
    """Every row of the local tasks, with its benchmark's options: 53 questions on the four photos."""
    requests = []
    for name, benchmark in BENCHMARKS.items():
        options = {
            "max_new_tokens": max_new_tokens,
            "conversation": benchmark.conversation,
            "image_aspect_ratio": "pad" if benchmark.pad else "original",
        }
        for row in rows(name):
            images = row["image"] if isinstance(row["image"], list) else [row["image"]]
            requests.append(GenerationRequest(benchmark.prompt_text(row), images, options))
    return requests


def test_shared_prefix_answers_equal_whole_prompts_and_encode_each_image_once(evaluator, monkeypatch):
    """Sharing the prefix changes no answer (batch 1 and 3, against whole prompts at batch 1), and each
    distinct prefix (conversation, padding, image) is prefilled once, however the batches fall."""
    model, processor = evaluator.model, evaluator.processor
    requests = _fixture_requests(max_new_tokens=8)
    whole = EvalModel(model, processor, batch_size=1, share_prefix=False).generate(requests)
    distinct = {
        (
            r.options["conversation"],
            r.options["image_aspect_ratio"],
            *(hashlib.sha1(i.tobytes()).hexdigest() for i in r.images),
        )
        for r in requests
    }
    assert len(distinct) < len(requests) / 2  # the fixtures ask several questions about each photo
    images = {
        (r.options["image_aspect_ratio"], hashlib.sha1(i.tobytes()).hexdigest()) for r in requests for i in r.images
    }
    encoded = watch_vision_tower(monkeypatch, model)
    preprocessed = []
    image_processor = processor.image_processor
    monkeypatch.setattr(image_processor, "preprocess", spy_on(image_processor.preprocess, preprocessed))
    for batch_size in (1, 3):
        encoded.clear()
        preprocessed.clear()
        assert EvalModel(model, processor, batch_size=batch_size).generate(requests) == whole
        # one image a distinct prefix, plus the second image of the one two-image question's prefix
        multi = sum(len(r.images) - 1 for r in requests)
        assert len(encoded) == len(distinct) + multi
        assert len(preprocessed) == len(images)  # each photo preprocessed once a padding, not once a question


def test_shared_prefix_logits_equal_the_whole_prompts(evaluator):
    """Two questions about one photo through the shared path (one prefix prefill, pads between prefix and
    question): the logits of every generated step equal those of each prompt run alone, prefilled whole."""
    from transformers_sharegpt4v.evaluation.prefix import (
        batch_cache,
        image_digests,
        prefix_cache,
        shared_inputs,
        split_prefix,
    )

    model, processor = evaluator.model, evaluator.processor
    dog = Image.open(PHOTOS / "coco_dog_000000319154.jpg").convert("RGB")
    prompts = [build_prompt("Is there a dog?"), build_prompt("What is the animal on the left doing, and why?")]
    encoded = [processor(text=p, images=[dog], return_tensors="pt") for p in prompts]
    alone = []
    for item in encoded:
        out = model.generate(
            **item, max_new_tokens=3, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
        alone.append(torch.stack(out.logits, dim=1)[0])
    prefixes = [split_prefix(i["input_ids"], image_digests([dog]), model.config.image_token_id) for i in encoded]
    assert prefixes[0] == prefixes[1] and prefixes[0].length < encoded[0]["input_ids"].shape[1]
    length = prefixes[0].length
    with torch.inference_mode():
        layers = prefix_cache(model, encoded[0]["input_ids"][:, :length], encoded[0]["pixel_values"])
    cache = batch_cache([layers, layers], model.config)
    input_ids, attention_mask = shared_inputs(encoded, length, processor.tokenizer.pad_token_id)
    assert (attention_mask == 0).any()  # the shorter question is padded between its prefix and its text
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        cache=cache,
        max_new_tokens=3,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    shared = torch.stack(out.logits, dim=1)
    for row in range(2):
        torch.testing.assert_close(shared[row], alone[row], rtol=1e-4, atol=1e-4)


def test_plan_batches_keeps_a_prefix_together():
    from transformers_sharegpt4v.evaluation.prefix import SharedPrefix, plan_batches

    a, b, c = SharedPrefix(("a",), 10), SharedPrefix(("b",), 10), SharedPrefix(("c",), 12)
    prefixes = {0: a, 1: b, 2: a, 3: c, 4: b, 5: a}
    assert plan_batches(prefixes, 2) == [[0, 2], [5, 1], [4], [3]]
    assert plan_batches(prefixes, 8) == [[0, 2, 5, 1, 4], [3]]  # one prefix length a batch


def test_stop_strings_and_options(evaluator, caplog):
    dog = Image.open(PHOTOS / "coco_dog_000000319154.jpg")
    full = evaluator.generate([GenerationRequest("Hi", [dog], {"max_new_tokens": 6})])[0]
    assert len(full) > 2
    stop = full[1:3]
    cut = evaluator.generate([GenerationRequest("Hi", [dog], {"max_new_tokens": 6, "until": [stop]})])[0]
    assert cut == full.split(stop, 1)[0].strip()
    with caplog.at_level("WARNING"):
        evaluator.generate([GenerationRequest("Hi", [dog], {"max_new_tokens": 1, "image_sizes": [1]})])
    assert "image_sizes" in caplog.text
    with pytest.raises(ValueError, match="image_aspect_ratio"):
        evaluator.generate([GenerationRequest("Hi", [dog], {"image_aspect_ratio": "square"})])


def test_loglikelihood_is_the_models_loss_on_the_continuation(evaluator, monkeypatch):
    processor, model = evaluator.processor, evaluator.model
    lake = Image.open(PHOTOS / "waterview.jpg")
    question, continuation = "Is this a lake?", " Yes, a calm lake."
    logprob, greedy = evaluator.loglikelihood(question, continuation, [lake])

    prompt = f"{VICUNA} USER: <image>\n{question} ASSISTANT:"
    context = processor(text=prompt, images=[lake], return_tensors="pt")["input_ids"]
    inputs = processor(text=prompt + continuation, images=[lake], return_tensors="pt")
    labels = inputs["input_ids"].clone()
    labels[:, : context.shape[1]] = -100
    n = int((labels != -100).sum())
    assert n >= 3
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert logprob == pytest.approx(-out.loss.item() * n, rel=1e-4)
    predicted = out.logits[0, context.shape[1] - 1 : -1].argmax(-1)
    assert greedy == bool((predicted == inputs["input_ids"][0, context.shape[1] :]).all())
    # a model whose logits put the continuation's tokens first: greedy, log-probability ~0
    targets = inputs["input_ids"][0, context.shape[1] :]
    forward = model.forward

    def favouring(*args, **kwargs):
        out = forward(*args, **kwargs)
        rows = torch.arange(context.shape[1] - 1, out.logits.shape[1] - 1)
        out.logits[0, rows, targets] += 1000.0
        return out

    monkeypatch.setattr(model, "forward", favouring)
    logprob, greedy = evaluator.loglikelihood(question, continuation, [lake])
    assert greedy is True and -1e-3 < logprob <= 0


# ------------------------------------------------------------------------------------------------ scoring


def test_answer_parsing_rules():
    assert [parse_yes_no(a) for a in ["Yes", "no", "No, it is not.", "yes.", "Maybe", "Nope", "The"]] == [
        "yes", "no", "no", "yes", "other", "no", "other",
    ]  # fmt: skip
    cases = {"B": "B", "B. two": "B", "C": None, "The answer is A.": "A", "b": None, "A or B": None, "": None}
    assert {a: extract_option_letter(a, 2) for a in cases} == cases


def test_mme_score_against_a_hand_count():
    records = [
        # existence: image e1 both right, e2 one right -> acc 3/4, acc+ 1/2 -> 75 + 50
        {"category": "existence", "image_id": "e1", "correct": True},
        {"category": "existence", "image_id": "e1", "correct": True},
        {"category": "existence", "image_id": "e2", "correct": True},
        {"category": "existence", "image_id": "e2", "correct": False},
        # OCR: all wrong -> 0; code_reasoning (cognition): both right -> 200
        {"category": "OCR", "image_id": "o1", "correct": False},
        {"category": "OCR", "image_id": "o1", "correct": False},
        {"category": "code_reasoning", "image_id": "c1", "correct": True},
        {"category": "code_reasoning", "image_id": "c1", "correct": True},
    ]
    assert mme_perception(records) == pytest.approx(125.0)
    assert mme_cognition(records) == pytest.approx(200.0)


def test_circular_accuracy_needs_every_rotation_right():
    records = [
        {"index": 7, "correct": True},
        {"index": 1_000_007, "correct": True},
        {"index": 8, "correct": True},
        {"index": 1_000_008, "correct": False},
    ]
    assert circular_accuracy(records) == 50.0


def test_row_scores_on_the_fixtures():
    assert score_row("mme", rows("mme")[1], "No")["correct"] is True
    assert score_row("mme", rows("mme")[1], "Yes, there is")["correct"] is False
    mmbench = rows("mmbench_en")  # row 1 is question 0 with the options rotated: "dog" is D
    record = score_row("mmbench_en", mmbench[1], "D. dog")
    assert (record["index"], record["correct"], record["prediction"]) == (1_000_000, True, "D. dog")
    assert record["row"]["D"] == "dog" and "image" not in record["row"]
    # the columns the submission file writes (LLaVA's convert_mmbench_for_submission.py), nothing else
    assert list(record["row"]) == ["index", "question", "A", "B", "C", "D", "answer", "split"]
    # GQA: convert_gqa_for_eval's rstrip('.') + lower, then exact match
    assert score_row("gqa", rows("gqa")[0], "Dog.")["correct"] is True
    assert score_row("gqa", rows("gqa")[0], "a dog")["correct"] is False
    assert score_row("scienceqa_img", rows("scienceqa_img")[1], "B")["correct"] is True
    qbench = rows("qbench")
    assert score_row("qbench", qbench[3], "D")["correct"] is True
    assert score_row("qbench", qbench[3], "none")["correct"] is True  # the candidate's text
    assert score_row("qbench", {**qbench[3], "correct_choice": "none"}, "D")["correct"] is True  # original JSON
    with pytest.raises(ValueError, match="Yes or No"):
        score_row("mme", {**rows("mme")[0], "answer": "maybe"}, "yes")


# ------------------------------------------------------------------------------------------------ tasks


@needs_lmms_eval
def test_vqa_accuracy_is_the_min_of_matches_over_three():
    """TextVQA's rule by hand: row 304 has 3 x "sony" and 7 x "lg". Leaving out one of the ten references at a time,
    "sony" matches 2 others (when a "sony" is left out: 3 times) or 3 (7 times): (3 x 2/3 + 7 x 1) / 10."""
    from transformers_sharegpt4v.evaluation.scoring import vqa_accuracy

    row = rows("textvqa")[3]
    assert score_row("textvqa", row, "Sony.")["score"] == pytest.approx((3 * 2 / 3 + 7) / 10)
    assert score_row("textvqa", row, "LG")["score"] == pytest.approx(1.0)
    assert score_row("textvqa", row, "panasonic")["score"] == 0.0
    # the EvalAI normalization: articles, punctuation, number words
    assert vqa_accuracy("Two dogs", ["2 dogs"] * 10) == 1.0
    assert vqa_accuracy("the pier", ["pier"] * 3 + ["dock"] * 7) == pytest.approx(0.3 * 2 / 3 + 0.7)


def test_write_tasks_points_at_the_data_by_absolute_path(tmp_path):
    written = write_tasks(EVAL_DATA, tmp_path / "tasks")
    assert sorted(written) == sorted(f"sharegpt4v_{name}" for name in BENCHMARKS)
    loader = yaml.SafeLoader
    loader.add_constructor("!function", lambda loader_, node: ("function", loader_.construct_scalar(node)))
    configs = {task: yaml.load(path.read_text(), Loader=loader) for task, path in written.items()}
    qbench = configs["sharegpt4v_qbench"]
    assert qbench["dataset_path"] == "parquet"
    assert qbench["dataset_kwargs"]["data_files"] == {"dev": [str(EVAL_DATA / "qbench.parquet")]}
    assert qbench["generation_kwargs"] | {} == {
        "max_new_tokens": 1024, "temperature": 0, "top_p": 1.0, "num_beams": 1, "do_sample": False, "until": [],
        "conversation": "share4v_v1", "image_aspect_ratio": "original",
    }  # fmt: skip
    mme = configs["sharegpt4v_mme"]["generation_kwargs"]
    assert (mme["max_new_tokens"], mme["conversation"], mme["image_aspect_ratio"]) == (128, "vicuna_v1", "pad")
    assert configs["sharegpt4v_scienceqa_img"]["generation_kwargs"]["image_aspect_ratio"] == "original"
    assert configs["sharegpt4v_seedbench"]["process_docs"] == (
        "function",
        "transformers_sharegpt4v.evaluation.lmms_tasks.seedbench_image_rows",
    )
    assert [m["metric"] for m in configs["sharegpt4v_mme"]["metric_list"]] == ["mme_perception", "mme_cognition"]


def test_write_tasks_reads_save_to_disk_folders_and_names_missing_data(tmp_path):
    data = tmp_path / "data"
    datasets.DatasetDict({"dev": datasets.Dataset.from_list(rows("qbench"))}).save_to_disk(str(data / "qbench"))
    written = write_tasks(data, tmp_path / "tasks", ["qbench"])
    config = yaml.safe_load(written["sharegpt4v_qbench"].read_text().replace("!function", ""))
    assert config["dataset_path"] == str(data / "qbench")
    assert config["dataset_kwargs"] == {"load_from_disk": True} and config["test_split"] == "dev"
    with pytest.raises(ValueError, match=r"mme\.parquet"):
        write_tasks(data, tmp_path / "tasks", ["mme"])
    with pytest.raises(ValueError, match="the local tasks are"):
        write_tasks(data, tmp_path / "tasks", ["pope"])
    with pytest.raises(ValueError, match="No benchmark data"):
        write_tasks(tmp_path / "empty", tmp_path / "tasks")


def test_benchmark_table_holds_the_papers_numbers():
    """The ShareGPT4V-7B row of the paper's table (docs/reference.md), written out here by hand."""
    paper = {
        "llava_bench": {"submission": 72.6},
        "mme": {"mme_perception": 1567.4, "mme_cognition": 376.4},
        "mmbench_en": {"submission": 68.8},
        "mmbench_cn": {"submission": 62.2},
        "seedbench": {"accuracy": 69.7},
        "mmvet": {"submission": 37.6},
        "qbench": {"accuracy": 63.4},
        "scienceqa_img": {"accuracy": 68.4},
        "vqav2": {"submission": 80.6},
        "vizwiz": {"submission": 57.2},
        "gqa": {"accuracy": 63.3},
        "textvqa": {"accuracy": 60.4},
    }
    reported = {name: {k: v for k, v in b.metrics.items() if v is not None} for name, b in BENCHMARKS.items()}
    assert reported == paper
    assert {name: b.max_new_tokens for name, b in BENCHMARKS.items() if b.max_new_tokens != 128} == {
        n: 1024 for n in ("mmbench_en", "mmbench_cn", "scienceqa_img", "qbench", "llava_bench", "mmvet")
    }
    # the loops that call the CLIP processor on the opened image (model_vqa.py, model_vqa_science.py, Q-Bench's)
    assert {name for name, b in BENCHMARKS.items() if not b.pad} == {"scienceqa_img", "qbench", "llava_bench", "mmvet"}
    assert {name for name, b in BENCHMARKS.items() if b.conversation != "vicuna_v1"} == {"qbench"}


def test_benchmark_table_errors_name_the_benchmark(tmp_path):
    from transformers_sharegpt4v.evaluation.protocol import _read_benchmarks

    table = tmp_path / "benchmarks.yaml"
    table.write_text("mme:\n  title: MME\n  question: no_such_question\n  metrics: {}\n  sourse: x\n  source: y\n")
    with pytest.raises(ValueError, match=r"\[mme\]: unknown field 'sourse'; `question` is not one of"):
        _read_benchmarks(table)


def test_report_table_and_paper_numbers():
    results = {
        "results": {
            "sharegpt4v_mme": {"alias": "x", "mme_perception,none": 1500.0, "mme_perception_stderr,none": "N/A"},
            "sharegpt4v_qbench": {"accuracy,none": 50.0, "accuracy_stderr_clt,none": 1.0},
            "sharegpt4v_mmvet": {"submission,none": 218},
        },
        "n-samples": {
            "sharegpt4v_mme": {"original": 8, "effective": 8},
            "sharegpt4v_qbench": {"original": 4, "effective": 2},
            "sharegpt4v_mmvet": {"original": 218, "effective": 218},
        },
    }
    got = report_rows(results)
    assert [(r["task"], r["metric"], r["value"], r["paper"]) for r in got] == [
        ("sharegpt4v_mme", "mme_perception", 1500.0, 1567.4),
        ("sharegpt4v_qbench", "accuracy", 50.0, 63.4),
        ("sharegpt4v_mmvet", "submission", 218.0, 37.6),
    ]
    table = format_report(got)
    assert "1567.4" in table and "2/4" in table
    markdown = format_markdown(got, "/runs/eval/submissions").splitlines()
    assert markdown[0].startswith("| benchmark | metric | this run | paper (ShareGPT4V-7B) |")
    assert markdown[2] == "| MME | mme_perception | 1500.00 | 1567.4 | 8 | local |"
    assert markdown[3] == "| Q-Bench (LLVisionQA) | accuracy | 50.00 | 63.4 | 2 of 4 | local |"
    assert markdown[4].startswith("| MM-Vet | submission | 218 answers | 37.6 | 218 | submit ")
    assert "/runs/eval/submissions/mmvet_results.json to the GPT-4 judge" in markdown[4]


# ------------------------------------------------------------------------------------------------ command


def test_eval_command_errors(tmp_path, capsys):
    base = ["eval", "--data", str(EVAL_DATA), "--output", str(tmp_path / "out")]
    assert main([*base, "--model", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert main([*base, "--model", str(tmp_path)]) == 2
    assert "has no config.json, so it is not a checkpoint" in capsys.readouterr().err
    (tmp_path / "config.json").write_text('{"model_type": "sharegpt4v"}')
    assert main([*base, "--model", str(tmp_path), "--tasks", "mme,pope"]) == 2
    assert "the local tasks are" in capsys.readouterr().err
    assert main([*base, "--model", str(tmp_path), "--limit", "0"]) == 2
    assert "--limit must be a positive integer" in capsys.readouterr().err


def test_eval_names_missing_columns_and_a_failed_run_in_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    datasets.Dataset.from_list(
        [{k: v for k, v in row.items() if k != "ocr_tokens"} for row in rows("textvqa")]
    ).to_parquet(str(data / "textvqa.parquet"))
    capsys.readouterr()  # the parquet writer's progress bar
    base = ["eval", "--model", str(checkpoint), "--data", str(data), "--output", str(tmp_path / "out")]
    assert main([*base, "--tasks", "textvqa"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "textvqa.parquet: textvqa rows need the column(s) ocr_tokens" in err

    from transformers_sharegpt4v.evaluation import cli as eval_cli

    def failing(*args):
        raise RuntimeError("the model ran out of memory\n at step 3")

    monkeypatch.setattr(eval_cli, "evaluate", failing)
    assert main(["eval", "--model", str(checkpoint), "--data", str(EVAL_DATA), "--output", str(tmp_path / "o"),
                 "--tasks", "gqa"]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert (
        err == "sharegpt4v eval: error: the lmms-eval run failed: RuntimeError: the model ran out of memory at step 3"
    )


def test_tasks_paper_writes_the_twelve_benchmarks(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", "--model", str(checkpoint), "--data", str(EVAL_DATA), "--output", str(out), "--tasks",
                 "paper", "--tasks-only"]) == 0  # fmt: skip
    written = sorted(p.stem.removeprefix("sharegpt4v_") for p in (out / "tasks").iterdir())
    assert written == sorted(["vqav2", "gqa", "vizwiz", "scienceqa_img", "textvqa", "mme", "mmbench_en", "mmbench_cn",
                              "seedbench", "llava_bench", "mmvet", "qbench"])  # fmt: skip
    assert "Wrote 12 task(s)" in capsys.readouterr().out


def test_tasks_only_prints_the_lmms_eval_command(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "--model",
            str(checkpoint),
            "--data",
            str(EVAL_DATA),
            "--output",
            str(out),
            "--tasks",
            "mme",
            "--tasks-only",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"--include_path {(out / 'tasks').resolve()} --tasks sharegpt4v_mme" in printed
    assert "python -m lmms_eval --model sharegpt4v" in printed
    assert f"--model_args pretrained={checkpoint},dtype=auto,share_prefix=true " in printed
    assert sorted(p.name for p in (out / "tasks").iterdir()) == ["sharegpt4v_mme.yaml"]
    argv = ["eval", "--model", str(checkpoint), "--data", str(EVAL_DATA), "--output", str(out), "--tasks", "mme"]
    assert main([*argv, "--tasks-only", "--no-share-prefix"]) == 0
    assert "share_prefix=false" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ lmms-eval


@needs_lmms_eval
def test_entry_point_registers_the_model():
    from lmms_eval.models import get_model

    from transformers_sharegpt4v.evaluation.lmms_eval_model import ShareGPT4VLmms

    assert get_model("sharegpt4v") is ShareGPT4VLmms


@needs_lmms_eval
def test_lmms_eval_model_args_share_prefix(checkpoint):
    from transformers_sharegpt4v.evaluation.lmms_eval_model import ShareGPT4VLmms

    assert ShareGPT4VLmms(pretrained=str(checkpoint), device="cpu").evaluator.share_prefix is True
    assert (
        ShareGPT4VLmms(pretrained=str(checkpoint), device="cpu", share_prefix="false").evaluator.share_prefix is False
    )
    with pytest.raises(ValueError, match="share_prefix must be true or false, got 'maybe'"):
        ShareGPT4VLmms(pretrained=str(checkpoint), device="cpu", share_prefix="maybe")


@needs_lmms_eval
def test_lmms_eval_model_puts_one_images_questions_together(evaluator):
    """MME's rows 0 and 1 ask about one photo, rows 2 and 3 about another: asked in the order 0, 2, 1, 3, the
    adapter answers 0, 1 (after 0) and 2, 3; a row it cannot read (doc 99) keeps its place."""
    from types import SimpleNamespace

    from transformers_sharegpt4v.evaluation.lmms_eval_model import ShareGPT4VLmms

    adapter = ShareGPT4VLmms.from_evaluator(evaluator)
    adapter.task_dict = {"mme": {"test": datasets.Dataset.from_parquet(str(EVAL_DATA / "mme.parquet"))}}
    requests = [SimpleNamespace(args=("q", {}, None, doc, "mme", "test")) for doc in (0, 2, 1, 99, 3)]
    assert adapter._order(requests) == [0, 2, 1, 4, 3]


@needs_lmms_eval
def test_lmms_eval_model_refuses_a_released_checkpoint_with_the_convert_command(tmp_path):
    from transformers_sharegpt4v.evaluation.lmms_eval_model import ShareGPT4VLmms

    released = tmp_path / "ShareGPT4V-7B"
    released.mkdir()
    config = {"model_type": "share4v", "architectures": ["Share4VLlamaForCausalLM"], "hidden_size": 4096,
              "mm_vision_tower": "Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12"}  # fmt: skip
    (released / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"run `sharegpt4v convert {released} {released}-converted`"):
        ShareGPT4VLmms(pretrained=str(released), device="cpu")


@needs_lmms_eval
def test_lmms_eval_scores_the_local_tasks(checkpoint, tmp_path, monkeypatch):
    """lmms-eval runs every local task on the fixtures with scripted answers ("Yes" to short-answer questions,
    "B" to the rest); the metrics equal a count by hand over the fixture rows."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from transformers_sharegpt4v.evaluation.lmms_eval_model import ShareGPT4VLmms

    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "cache"))
    lm = ShareGPT4VLmms(pretrained=str(checkpoint), device="cpu")
    asked = []

    def scripted(requests):
        asked.extend(requests)
        return ["Yes" if r.question.endswith("single word or phrase.") else "B" for r in requests]

    monkeypatch.setattr(lm.evaluator, "generate", scripted)
    monkeypatch.chdir(tmp_path)  # without --output_path, lmms-eval's submission files go to ./submissions
    write_tasks(EVAL_DATA, tmp_path / "tasks")
    results = simple_evaluate(
        model=lm,
        tasks=sorted(f"sharegpt4v_{name}" for name in BENCHMARKS),
        task_manager=TaskManager("WARNING", include_path=str(tmp_path / "tasks"), model_name="sharegpt4v"),
        bootstrap_iters=0,
        verbosity="WARNING",
    )["results"]
    # MME: every image has a Yes and a No question -> 50 per category; 3 perception + 1 cognition categories
    assert results["sharegpt4v_mme"]["mme_perception,none"] == pytest.approx(150.0)
    assert results["sharegpt4v_mme"]["mme_cognition,none"] == pytest.approx(50.0)
    # MMBench rows answered B: question 1 (turn 0) and question 3 (turn 0) of 8; no question right in both turns
    for task in ("sharegpt4v_mmbench_en", "sharegpt4v_mmbench_cn"):
        assert results[task]["accuracy,none"] == pytest.approx(25.0)
        assert results[task]["circular_accuracy,none"] == 0.0
    assert results["sharegpt4v_seedbench"]["accuracy,none"] == pytest.approx(50.0)  # the video row is left out
    assert results["sharegpt4v_scienceqa_img"]["accuracy,none"] == pytest.approx(50.0)
    assert results["sharegpt4v_qbench"]["accuracy,none"] == pytest.approx(50.0)
    assert results["sharegpt4v_gqa"]["accuracy,none"] == pytest.approx(25.0)  # only row 203's answer is "yes"
    assert results["sharegpt4v_textvqa"]["accuracy,none"] == 0.0  # no reference says "yes"
    # judge/server benchmarks: the answers go to the files to submit, in the original converters' formats
    for name, count in {
        "vqav2": 2,
        "vizwiz": 2,
        "llava_bench": 2,
        "mmvet": 2,
        "mmbench_en": 8,
        "mmbench_cn": 8,
    }.items():
        assert results[f"sharegpt4v_{name}"]["submission,none"] == count
    submitted = tmp_path / "submissions"
    assert json.loads((submitted / "vqav2_testdev_submission.json").read_text()) == [
        {"question_id": 401, "answer": "yes"}, {"question_id": 402, "answer": "yes"},
    ]  # fmt: skip
    assert json.loads((submitted / "vizwiz_test_submission.json").read_text())[0] == {
        "image": "VizWiz_test_00000001.jpg",
        "answer": "yes",
    }
    assert json.loads((submitted / "mmvet_results.json").read_text()) == {"v1_0": "B", "v1_1": "B"}
    llava = [json.loads(line) for line in (submitted / "llava_bench_answers.jsonl").read_text().splitlines()]
    assert [(a["question_id"], a["prompt"], a["text"]) for a in llava] == [
        (0, "What is unusual about this image?", "B"), (1, "Describe the image in detail.", "B"),
    ]  # fmt: skip
    import pandas

    table = pandas.read_excel(submitted / "mmbench_en_submission.xlsx")
    assert list(table["prediction"]) == ["B"] * 8 and list(table["index"])[:2] == [0, 1_000_000]
    # the columns of LLaVA's convert_mmbench_for_submission.py: the TSV's, less six, prediction after the options
    assert list(table.columns) == ["index", "question", "A", "B", "C", "D", "prediction", "answer", "split"]
    assert len(asked) == 8 + 8 + 8 + 4 + 4 + 4 + 4 + 4 + 2 + 2 + 2 + 2
    qbench = [r for r in asked if r.options.get("conversation") == "share4v_v1"]
    assert len(qbench) == 4 and all(r.options["image_aspect_ratio"] == "original" for r in qbench)
    assert all(len(r.images) == 1 and r.images[0].mode == "RGB" for r in asked)
    # questions about one photo are asked together (each photo one run), so that they share their prefix; the
    # answers went back to their own questions (the scores above)
    photos = [hashlib.sha1(r.images[0].tobytes()).hexdigest() for r in asked]
    runs = [photo for i, photo in enumerate(photos) if i == 0 or photos[i - 1] != photo]
    assert len(runs) == len(set(photos)) == 4


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "LMMS_EVAL_DATASETS_CACHE": str(tmp_path / "cache"),
    }
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)


@pytest.mark.slow
@needs_lmms_eval
def test_lmms_eval_cli_and_sharegpt4v_eval_on_a_checkpoint(checkpoint, tmp_path):
    """The real thing, in subprocesses: lmms-eval's own CLI with --model sharegpt4v, then `sharegpt4v eval`, on the
    tiny checkpoint (2 rows a task, 2 new tokens). lmms-eval exits 0 even when a run fails, so the test reads the
    results it wrote."""
    write_tasks(EVAL_DATA, tmp_path / "tasks", ["mme", "qbench"])
    done = _run(
        [sys.executable, "-m", "lmms_eval", "--model", "sharegpt4v", "--model_args", f"pretrained={checkpoint}",
         "--include_path", str(tmp_path / "tasks"), "--tasks", "sharegpt4v_mme,sharegpt4v_qbench", "--limit", "2",
         "--gen_kwargs", "max_new_tokens=2", "--output_path", str(tmp_path / "lmms")],
        tmp_path,
    )  # fmt: skip
    found = list((tmp_path / "lmms").rglob("*_results.json"))
    assert done.returncode == 0 and found, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(found[0].read_text())
    assert set(results["results"]) == {"sharegpt4v_mme", "sharegpt4v_qbench"}
    assert results["n-samples"]["sharegpt4v_qbench"]["effective"] == 2

    out = tmp_path / "eval"
    done = _run(
        [sys.executable, "-m", "transformers_sharegpt4v.cli", "eval", "--model", str(checkpoint), "--data",
         str(EVAL_DATA), "--tasks", "scienceqa_img,gqa,textvqa,mmvet", "--output", str(out), "--limit", "2",
         "--max-new-tokens", "2", "--batch-size", "2"],
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "sharegpt4v_scienceqa_img" in done.stdout and "68.4" in done.stdout
    samples = [
        json.loads(line) for line in (out / "samples" / "sharegpt4v_scienceqa_img.jsonl").read_text().splitlines()
    ]
    assert len(samples) == 2 and all(isinstance(s["answer"], str) and "correct" in s for s in samples)
    assert samples[0]["question"] == BENCHMARKS["scienceqa_img"].prompt_text(rows("scienceqa_img")[0])
    assert json.loads((out / "results.json").read_text())["results"]["sharegpt4v_scienceqa_img"]
    report = (out / "report.md").read_text()
    assert "| GQA (test-dev balanced) | accuracy |" in report and "| 63.3 | 2 of 4 | local |" in report
    assert (
        "| MM-Vet | submission | 2 answers | 37.6 |" in report
        and f"{out / 'submissions'}/mmvet_results.json" in report
    )
    assert len(json.loads((out / "submissions" / "mmvet_results.json").read_text())) == 2
    assert "MM-Vet: submit submissions/mmvet_results.json to the GPT-4 judge" in done.stdout


SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."


def original_question(task: str, row: dict) -> str:
    """The question file's text, written out here from LLaVA's question files (not through `protocol`)."""
    if task == "mme":
        return row["question"].replace("  Please answer yes or no.", "").replace(" Please answer yes or no.", "") + (
            "\n" + SHORT
        )
    if task == "mmbench_en":
        text = (f"{row['hint']}\n" if row["hint"] else "") + row["question"]
        return text + "".join(f"\n{x}. {row[x]}" for x in "ABCD" if row[x] is not None) + "\n" + LETTER
    if task == "gqa":
        return row["question"] + "\n" + SHORT
    if task == "textvqa":
        ocr = f"\nReference OCR token: {', '.join(row['ocr_tokens'])}" if row["ocr_tokens"] else ""
        return row["question"][0].upper() + row["question"][1:] + ocr + "\n" + SHORT
    raise AssertionError(task)


def original_pixels(image: Image.Image) -> torch.Tensor:
    """LLaVA's expand2square with the CLIP mean as integers, then CLIP's 336 preprocessing (numpy)."""
    import numpy as np

    image = image.convert("RGB")
    width, height = image.size
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), (122, 116, 104))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    pixels = np.asarray(canvas.resize((336, 336), Image.BICUBIC), dtype=np.float64) / 255.0
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
    return torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1)).float()


@pytest.mark.slow
@needs_lmms_eval
def test_lmms_eval_cli_feeds_generate_the_original_prompts_and_pixels(
    checkpoint, spm_model_file, tmp_path, monkeypatch
):
    """lmms-eval's own CLI (its `main`, in this process so that `generate` can be watched) with --model sharegpt4v on
    the MME, MMBench, GQA and TextVQA fixtures, at batch 1 and batch 4: every prompt's ids equal the original
    evaluation prompt tokenized as the original does (split at <image>, each piece by SentencePiece, BOS once, the
    image's 576 positions between), the pixels equal the padded original preprocessing, and batch 4 answers equal
    batch 1's. With the prefix shared (the default) `generate` gets the same ids, padded between prefix and
    question, and the answers are the same again (its pixels: test_generate_is_model_generate_on_the_original_inputs)."""
    import sentencepiece
    from lmms_eval.cli.dispatch import main as lmms_eval_main

    from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VForCausalLM

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model_file))
    image_token = ShareGPT4VConfig.from_pretrained(checkpoint).image_token_id
    tasks = {"mme": "mme", "mmbench_en": "mmbench_en", "gqa": "gqa", "textvqa": "textvqa"}
    expected = {}  # ids -> pixels
    for task in tasks:
        for row in rows(task):
            before, after = f"{VICUNA} USER: <image>\n{original_question(task, row)} ASSISTANT:".split("<image>")
            ids = [1] + sp.encode(before) + [image_token] * 576 + sp.encode(after)
            expected[tuple(ids)] = original_pixels(row["image"])
    assert len(expected) == 8 + 8 + 4 + 4

    fed = []
    generate = ShareGPT4VForCausalLM.generate

    def spy(self, *args, **kwargs):
        pixel_values = kwargs.get("pixel_values", [None] * len(kwargs["input_ids"]))  # none when shared
        for ids, mask, pixels in zip(kwargs["input_ids"], kwargs["attention_mask"], pixel_values, strict=True):
            fed.append((tuple(ids[mask.bool()].tolist()), pixels, int(len(kwargs["input_ids"]))))
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(ShareGPT4VForCausalLM, "generate", spy)
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "cache"))
    write_tasks(EVAL_DATA, tmp_path / "tasks", list(tasks))
    answers = {}
    for batch, share in ((1, "false"), (4, "false"), (4, "true")):
        fed.clear()
        out = tmp_path / f"batch{batch}{share}"
        model_args = f"pretrained={checkpoint},device=cpu,share_prefix={share}"
        argv = ["lmms_eval", "--model", "sharegpt4v", "--model_args", model_args,
                "--include_path", str(tmp_path / "tasks"), "--tasks", ",".join(f"sharegpt4v_{t}" for t in tasks),
                "--batch_size", str(batch), "--gen_kwargs", "max_new_tokens=3", "--output_path", str(out),
                "--log_samples"]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        try:
            lmms_eval_main()
        except SystemExit as stop:
            assert not stop.code
        assert sorted(ids for ids, _, _ in fed) == sorted(expected)
        for ids, pixels, _ in fed:
            if share == "false":
                torch.testing.assert_close(pixels, expected[ids], atol=1e-5, rtol=0)
        assert max(size for _, _, size in fed) == batch
        answers[batch, share] = {}
        for task in tasks:
            (samples,) = out.rglob(f"*samples_sharegpt4v_{task}.jsonl")
            for line in samples.read_text().splitlines():
                sample = json.loads(line)
                answers[batch, share][task, sample["doc_id"]] = sample["filtered_resps"]
    assert len(answers[1, "false"]) == 24
    assert answers[4, "false"] == answers[1, "false"] == answers[4, "true"]


# ------------------------------------------------------------------------------------------------ torchvision guard


def test_torchvision_guard_reads_the_libraries_an_ops_library_needs(tmp_path, monkeypatch):
    """`needed_libraries` equals the ELF's DT_NEEDED list (as readelf prints it, where readelf exists, else as
    written out here for torch's libshm.so); a fake torchvision whose `_C.so` needs a torch library that the fake
    torch does not ship is judged broken and blocked, one whose needs are all shipped is left alone."""
    import shutil

    import sharegpt4v_torchvision_guard as guard

    libshm = Path(torch.__file__).parent / "lib" / "libshm.so"
    needed = guard.needed_libraries(libshm)
    if shutil.which("readelf"):
        listing = subprocess.run(["readelf", "-d", str(libshm)], capture_output=True, text=True, check=True).stdout
        assert needed == [line.split("[", 1)[1].rstrip("]") for line in listing.splitlines() if "(NEEDED)" in line]
    assert needed[:3] == ["libtorch_cpu.so", "librt.so.1", "libc10.so"]
    assert guard.needed_libraries(__file__) == []  # not an ELF file

    site = tmp_path / "site"
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')")
    shutil.copy(libshm, site / "torchvision" / "_C.so")  # needs libtorch_cpu.so and libc10.so
    (site / "torch" / "lib").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("")
    (site / "torch" / "lib" / "libc10.so").write_text("")
    monkeypatch.syspath_prepend(str(site))
    (site / "timm").mkdir()
    (site / "timm" / "__init__.py").write_text("from torchvision.ops.misc import FrozenBatchNorm2d")
    for name in ("torchvision", "timm"):
        monkeypatch.setitem(sys.modules, name, None)  # records the state to restore after the test
        monkeypatch.delitem(sys.modules, name)
    assert guard.torchvision_links() is False
    (site / "torch" / "lib" / "libtorch_cpu.so").write_text("")
    assert guard.torchvision_links() is True and guard.hide_broken_torchvision() is False
    (site / "torch" / "lib" / "libtorch_cpu.so").unlink()
    monkeypatch.setenv("SHAREGPT4V_KEEP_TORCHVISION", "1")
    assert guard.hide_broken_torchvision() is False and "torchvision" not in sys.modules
    monkeypatch.delenv("SHAREGPT4V_KEEP_TORCHVISION")
    import importlib.util

    assert importlib.util.find_spec("timm") is not None
    assert guard.hide_broken_torchvision() is True and sys.modules["torchvision"] is None
    assert importlib.util.find_spec("torchvision") is None
    with pytest.raises(ImportError):
        import torchvision  # noqa: F401
    assert importlib.util.find_spec("timm") is None  # it imports torchvision: hidden with it


def test_accelerate_launch_starts_beside_the_eval_extra():
    """`accelerate launch` (multi-process captioning and training) starts in this environment. With the eval
    extra on a CPU torch, PyPI's torchvision cannot load and the guard hides it; accelerate's CLI imports timm
    whenever it is installed, and timm imports torchvision: the guard hides timm too."""
    import shutil

    accelerate = shutil.which("accelerate")
    assert accelerate, "accelerate's command is not on PATH"
    done = subprocess.run([accelerate, "launch", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
