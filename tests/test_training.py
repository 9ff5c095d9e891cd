"""Training on TRL's SFTTrainer: stage policies, loss masks, truncation, packing, recipes, CLI, LoRA, scale-out.

Tiny models throughout (CLIP 336/14 = the real 576 image tokens, hidden 32) built in code; nothing is
downloaded. The subprocess tests run the real `sharegpt4v` / `trl` / `accelerate` commands.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config_kwargs
from no_plugin import blocker_dir, run_without_plugin, script

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "examples" / "recipes"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
ENV.pop("WANDB_MODE", None)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict[str, Path]:
    """Tiny vit/llm/corpus (`testing_utils.make_tiny_inputs`) and a checkpoint made by `init_checkpoint`."""
    from transformers_sharegpt4v.testing_utils import make_tiny_inputs
    from transformers_sharegpt4v.training.init_model import init_checkpoint

    root = tmp_path_factory.mktemp("tiny_run")
    paths = make_tiny_inputs(root, n_samples=12, max_sentences=10)
    paths["init"] = init_checkpoint(root / "init", vision=str(paths["vit"]), llm=str(paths["llm"]))
    return paths


@pytest.fixture(scope="session")
def processor(tiny_run):
    from transformers_sharegpt4v.processing_sharegpt4v import ShareGPT4VProcessor

    return ShareGPT4VProcessor.from_pretrained(tiny_run["init"])


@pytest.fixture(scope="session")
def corpus(tiny_run):
    from datasets import load_dataset

    return load_dataset(str(tiny_run["corpus"]), split="train")


def _model(path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")


def _collator(processor, **kwargs):
    from transformers_sharegpt4v.training import ShareGPT4VDataCollator

    return ShareGPT4VDataCollator(processor=processor, **kwargs)


def _image_row(text_pairs, image_size=(200, 150), row_id="row"):
    from PIL import Image

    messages = []
    for turn, (question, answer) in enumerate(text_pairs):
        content = [{"type": "text", "text": question}]
        if turn == 0:
            content.insert(0, {"type": "image", "text": None})
        messages += [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
    return {"id": row_id, "images": [Image.new("RGB", image_size, (200, 30, 30))], "messages": messages}


# --------------------------------------------------------------------------- trainable parameters


@pytest.mark.parametrize("stage", ["pretrain", "finetune", "captioner"])
def test_one_optimizer_step_changes_exactly_the_trainable_tensors(stage):
    from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VForCausalLM
    from transformers_sharegpt4v.training import apply_stage_policy

    torch.manual_seed(0)
    model = ShareGPT4VForCausalLM(ShareGPT4VConfig(**tiny_config_kwargs())).train()
    report = apply_stage_policy(model, stage, vision_trainable_from_layer=1 if stage == "pretrain" else None)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    # Independent statement of the policy (docs/reference.md, "Training recipe"); the tiny ViT has 3 layers and
    # vision_feature_layer=-2 reads the output of layer 1, so layer 2 and post_layernorm never get a gradient.
    def expected_trainable(name: str) -> bool:
        if not name.startswith("model.vision_tower."):
            return True
        return stage == "pretrain" and name.startswith("model.vision_tower.encoder.layers.1.")

    for name, param in model.named_parameters():
        assert param.requires_grad == expected_trainable(name), name
    assert report.unused_vision_layers == [2]
    assert report.trainable_vision_layers == ([1] if stage == "pretrain" else [])
    assert "no gradient" in report.summary() if stage == "pretrain" else "vision tower frozen" in report.summary()

    ids = torch.tensor([[1] + [700] * 576 + [50, 60, 70, 80, 2]])
    labels = ids.clone()
    labels[:, :577] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(input_ids=ids, pixel_values=torch.randn(1, 3, 336, 336), labels=labels).loss
    loss.backward()
    optimizer.step()
    for name, param in model.named_parameters():
        if expected_trainable(name):
            assert not torch.equal(param, before[name]), f"trainable {name} did not change"
        else:
            assert torch.equal(param, before[name]), f"frozen {name} changed"


def test_layers_past_vision_feature_layer_get_no_gradient():
    from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VForCausalLM

    torch.manual_seed(0)
    model = ShareGPT4VForCausalLM(ShareGPT4VConfig(**tiny_config_kwargs()))
    ids = torch.tensor([[1] + [700] * 576 + [50, 60]])
    model(input_ids=ids, pixel_values=torch.randn(1, 3, 336, 336), labels=ids).loss.backward()
    for name, param in model.named_parameters():
        unused = name.startswith(("model.vision_tower.encoder.layers.2.", "model.vision_tower.post_layernorm."))
        assert (param.grad is None or not param.grad.any()) == unused, name


# --------------------------------------------------------------------------- loss masks


def _supervised_spans(ids, labels):
    spans, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def test_vicuna_v1_labels_token_by_token(processor):
    tokenizer = processor.tokenizer
    rows = [
        _image_row(
            [("What is in the image?", "A red square."), ("How many objects are there?", "There is 1 object.")]
        ),
        _image_row([("Describe the image in detail.", "A small red circle is at the top of the image.")], (90, 300)),
    ]
    batch = _collator(processor, chat_template="vicuna_v1", max_length=None)(rows)
    assert batch["pixel_values"].shape == (2, 3, 336, 336)
    eos = tokenizer.eos_token_id
    for row, ids, labels, mask in zip(rows, batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        ids, labels, mask = ids.tolist(), labels.tolist(), mask.tolist()
        answers = [m["content"][0]["text"] for m in row["messages"] if m["role"] == "assistant"]
        spans = _supervised_spans(ids, labels)
        # each supervised span is exactly one answer followed by the </s> that closes it
        assert [tokenizer.decode(span[:-1]).strip() for span in spans] == answers
        assert all(span[-1] == eos for span in spans)
        # never BOS, the system prompt, user turns, "ASSISTANT:", image tokens or padding
        first = next(i for i, label in enumerate(labels) if label != -100)
        prompt = tokenizer.decode([t for t in ids[1:first] if t != processor.image_token_id]).strip()
        assert ids[0] == tokenizer.bos_token_id and labels[0] == -100
        assert prompt.startswith("A chat between") and prompt.endswith("ASSISTANT:")
        assert all(label == -100 for t, label in zip(ids, labels, strict=True) if t == processor.image_token_id)
        assert ids.count(processor.image_token_id) == 576
        assert all(label == -100 for label, m in zip(labels, mask, strict=True) if m == 0)
        user_turn = tokenizer.decode(ids[ids.index(eos) + 1 :]).split("ASSISTANT:")[0] if len(answers) > 1 else ""
        assert ("USER:" in user_turn) == (len(answers) > 1)
    assert (batch["attention_mask"] == 0).any()  # the batch really was padded


def test_plain_labels_are_the_caption_and_its_newline(processor):
    tokenizer = processor.tokenizer
    caption = "A large blue triangle is at the left of the image."
    row = _image_row([("Describe the image in detail.", caption)])
    encoded = _collator(processor, chat_template="plain", do_pad=False, max_length=None).encode(row)
    ids, labels = encoded["input_ids"], encoded["labels"]
    assert ids[0] == tokenizer.bos_token_id and ids[1 : 1 + 576] == [processor.image_token_id] * 576
    spans = _supervised_spans(ids, labels)
    assert len(spans) == 1 and spans[0] == ids[577:]  # everything after the image, nothing before
    assert tokenizer.decode(spans[0]).strip("\n").strip() == caption and tokenizer.decode(spans[0]).endswith("\n")
    assert eos_free(spans[0], tokenizer.eos_token_id)


def eos_free(ids, eos):
    return eos not in ids


def test_stage_image_padding_is_passed_to_the_image_processor(processor):
    row = _image_row([("q", "a")], image_size=(300, 100))
    padded = _collator(processor, chat_template="plain", do_pad=True).encode(row)["pixel_values"]
    plain = _collator(processor, chat_template="plain", do_pad=False).encode(row)["pixel_values"]
    image = row["images"][0]
    assert torch.equal(padded, processor.image_processor(image, do_pad=True, return_tensors="pt")["pixel_values"])
    assert torch.equal(plain, processor.image_processor(image, do_pad=False, return_tensors="pt")["pixel_values"])
    assert not torch.equal(padded, plain)


# --------------------------------------------------------------------------- truncation


def test_truncation_cuts_text_after_the_image_never_the_image(processor, caplog):
    long_answer = " ".join(["A small red circle is at the top of the image."] * 20)
    row = _image_row([("Describe the image in detail.", long_answer)])
    full = _collator(processor, chat_template="vicuna_v1", max_length=None).encode(row)
    image_start = full["input_ids"].index(processor.image_token_id)
    text_before_image_end = image_start + 1  # positions up to the image counted as one token

    limit = text_before_image_end + 10
    collator = _collator(processor, chat_template="vicuna_v1", max_length=limit)
    cut = collator.encode(row)
    assert len(cut["input_ids"]) == limit + 575  # max_length text tokens, the image counted once
    assert cut["input_ids"] == full["input_ids"][: limit + 575]
    assert cut["input_ids"].count(processor.image_token_id) == 576
    assert cut["labels"] == full["labels"][: limit + 575]
    assert cut["pixel_values"].shape == (1, 3, 336, 336)

    collator = _collator(processor, chat_template="vicuna_v1", max_length=text_before_image_end - 1)
    with caplog.at_level(logging.WARNING):
        assert collator.encode(row) is None
        assert collator.encode(dict(row, id="second")) is None
    assert collator.skipped == 2
    assert "Skipped sample 'second'" in caplog.text and "2 skipped so far" in caplog.text


def test_drop_overlong_filters_rows_whose_image_cannot_fit(processor):
    from datasets import Dataset

    from transformers_sharegpt4v.training import drop_overlong

    rows = [_image_row([("q", "a")], row_id=f"r{i}") for i in range(2)]
    rows.append(
        {
            "id": "text-only",
            "images": [],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
            ],
        }
    )
    dataset = Dataset.from_list([{"id": r["id"], "messages": r["messages"]} for r in rows])
    encoded = _collator(processor, chat_template="vicuna_v1", max_length=None).encode(rows[0])
    image_end = encoded["input_ids"].index(processor.image_token_id) + 1
    assert len(drop_overlong(dataset, processor, "vicuna_v1", image_end)) == 3
    assert drop_overlong(dataset, processor, "vicuna_v1", image_end - 1)["id"] == ["text-only"]
    # modality lengths for group_by_length: positions of the encoded row, negative for text-only rows
    measured = drop_overlong(dataset, processor, "vicuna_v1", None, add_lengths=True)
    collator = _collator(processor, chat_template="vicuna_v1", max_length=None)
    expected = [len(collator.encode(r)["input_ids"]) * (1 if r["images"] else -1) for r in rows]
    assert measured["length"] == expected and expected[0] > 576 and expected[2] < 0


def test_group_by_length_recipe_gets_modality_lengths_and_the_length_sampler(tiny_run, tmp_path):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from transformers_sharegpt4v.training import build_trainer, parse_recipe

    args = parse_recipe([
        "--config", str(RECIPES / "tiny_finetune.yaml"), "--model_name_or_path", str(tiny_run["init"]),
        "--dataset_name", str(tiny_run["corpus"]), "--output_dir", str(tmp_path), "--padding_free", "false",
        "--train_sampling_strategy", "group_by_length",
    ])  # fmt: skip
    before = args[1].to_dict()
    trainer = build_trainer(*args)
    assert args[1].to_dict() == before  # the caller's SFTConfig is not rewritten
    assert trainer.args is not args[1] and trainer.args.remove_unused_columns is False
    lengths = trainer.train_dataset["length"]
    assert len(lengths) == 12 and all(length > 576 for length in lengths)
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)


def test_packed_recipe_keeps_the_callers_config_and_saves_padding_free(tiny_run, tmp_path):
    """TRL must see padding_free=False (it refuses it for images; our collator packs): a copy gets that, the
    caller's SFTConfig and ModelConfig stay as given, and the trainer's (saved) arguments say padding_free."""
    from transformers_sharegpt4v.training import build_trainer, parse_recipe

    args = parse_recipe([
        "--config", str(RECIPES / "tiny_finetune.yaml"), "--model_name_or_path", str(tiny_run["init"]),
        "--dataset_name", str(tiny_run["corpus"]), "--output_dir", str(tmp_path), "--use_peft", "true",
    ])  # fmt: skip
    before = [a.to_dict() if hasattr(a, "to_dict") else dict(vars(a)) for a in args]
    trainer = build_trainer(*args)
    after = [a.to_dict() if hasattr(a, "to_dict") else dict(vars(a)) for a in args]
    assert after == before and args[1].padding_free is True and args[2].lora_target_modules is None
    assert trainer.args.padding_free is True and trainer.data_collator.padding_free is True
    assert trainer.padding_free is False  # what TRL itself was told


# --------------------------------------------------------------------------- padding-free packing


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_loss_equals_padded_batch_loss(tiny_run, processor, corpus, attn):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(
        tiny_run["init"], dtype=torch.float32, attn_implementation=attn
    )
    rows = [corpus[i] for i in range(3)]
    padded = _collator(processor, max_length=None)(rows)
    packed = _collator(processor, max_length=None, padding_free=True)(rows)
    lengths = padded["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 1 and packed["input_ids"].shape == (1, sum(lengths))
    assert "attention_mask" not in packed
    with torch.no_grad():
        loss_padded = model(**padded).loss
        out_packed = model(**packed)
    torch.testing.assert_close(out_packed.loss, loss_padded, rtol=0, atol=1e-5)
    # per-sample logits of the pack equal the sample's padded logits
    start = 0
    with torch.no_grad():
        logits_padded = model(**{k: v for k, v in padded.items() if k != "labels"}).logits
    for row, n in enumerate(lengths):
        torch.testing.assert_close(out_packed.logits[0, start : start + n], logits_padded[row, :n], rtol=0, atol=1e-5)
        start += n


@pytest.mark.parametrize("varlen", [False, True])
def test_no_attention_across_samples_in_a_pack(tiny_run, processor, corpus, varlen):
    from transformers_sharegpt4v.training.varlen import use_sdpa_varlen

    model = _model(tiny_run["init"])
    if varlen:
        use_sdpa_varlen(model)
    rows = [corpus[i] for i in range(3)]
    changed = dict(rows[0])
    changed["images"] = [img.rotate(90) for img in changed["images"]]
    changed["messages"] = [dict(m) for m in rows[0]["messages"]]
    changed["messages"][1] = {"role": "assistant", "content": [{"type": "text", "text": "Something else entirely."}]}
    collator = _collator(processor, max_length=None, padding_free=True)
    a, b = collator(rows), collator([changed, rows[1], rows[2]])
    n_a, n_changed = len(collator.encode(rows[0])["input_ids"]), len(collator.encode(changed)["input_ids"])
    with torch.no_grad():
        logits_a, logits_b = model(**a).logits, model(**b).logits
    # samples 2 and 3 see exactly the same logits although sample 1 changed (text, length and image)
    torch.testing.assert_close(logits_a[0, n_a:], logits_b[0, n_changed:], rtol=0, atol=1e-5)
    assert not torch.allclose(logits_a[0, :n_a].mean(0), logits_b[0, :n_changed].mean(0))


def test_packed_positions_and_labels(processor, corpus):
    rows = [corpus[i] for i in range(3)]
    packed = _collator(processor, max_length=None, padding_free=True, return_flash_kwargs=True)(rows)
    padded = _collator(processor, max_length=None)(rows)
    lengths = padded["attention_mask"].sum(1).tolist()
    expected_positions = torch.cat([torch.arange(n) for n in lengths])
    assert torch.equal(packed["position_ids"][0], expected_positions)
    expected_labels = torch.cat([padded["labels"][i, :n] for i, n in enumerate(lengths)])
    assert torch.equal(packed["labels"][0], expected_labels)
    assert packed["cu_seq_lens_q"].tolist() == [0, lengths[0], lengths[0] + lengths[1], sum(lengths)]
    assert packed["max_length_q"] == max(lengths)


# --------------------------------------------------------------------------- recipes


def _cpu_overrides(recipe: Path) -> list[str]:
    import yaml

    keys = yaml.safe_load(recipe.read_text())
    extra = ["--use_cpu", "true", "--bf16", "false"]
    return extra + (["--tf32", "false"] if keys.get("tf32") else [])


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml") if p.name != "trl_finetune.yaml"))
def test_every_shipped_recipe_parses_strictly(recipe):
    from transformers_sharegpt4v.training.recipe import check_recipe_keys, parse_recipe

    path = RECIPES / recipe
    keys = check_recipe_keys(path)
    script_args, training_args, model_args, ours = parse_recipe(["--config", str(path), *_cpu_overrides(path)])
    assert ours.stage == keys["stage"] and training_args.learning_rate == keys["learning_rate"]
    assert (
        script_args.dataset_name == keys["dataset_name"]
        and model_args.model_name_or_path == keys["model_name_or_path"]
    )
    if not recipe.startswith("tiny_"):  # the paper's hyperparameters
        assert training_args.learning_rate == 2e-5 and training_args.num_train_epochs == 1
        assert training_args.warmup_steps == 0.03 and training_args.lr_scheduler_type == "cosine"
        assert training_args.weight_decay == 0 and training_args.max_length == 2048
        assert keys["bf16"] is True and keys["activation_checkpointing"] is True
        global_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * 16
        assert global_batch == (256 if ours.stage == "pretrain" else 128)
        assert ours.template == ("plain" if ours.stage == "pretrain" else "vicuna_v1")
        assert ours.do_pad == (ours.stage != "pretrain")


def test_trl_recipe_parses_with_trl_sft_parser():
    from trl.scripts.sft import make_parser

    parser = make_parser()
    args = parser.parse_args_and_config(
        ["--config", str(RECIPES / "trl_finetune.yaml"), *_cpu_overrides(RECIPES / "trl_finetune.yaml")],
        fail_with_unknown_args=True,
    )
    assert args[1].assistant_only_loss is True and args[1].trust_remote_code is True


def test_unknown_recipe_key_fails_naming_it(tmp_path):
    from transformers_sharegpt4v.training.recipe import parse_recipe

    recipe = tmp_path / "typo.yaml"
    recipe.write_text((RECIPES / "tiny_finetune.yaml").read_text() + "learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_recipe(["--config", str(recipe)])
    with pytest.raises(ValueError, match="--vision_trainable_from"):
        parse_recipe(["--config", str(RECIPES / "tiny_finetune.yaml"), "--vision_trainable_from", "3"])


# --------------------------------------------------------------------------- CLI, checkpoints, resume


def _train_cli(tiny_run, output_dir, *extra, recipe="tiny_pretrain.yaml", model=None):
    command = [
        sys.executable, "-m", "transformers_sharegpt4v.cli", "train", "--config", str(RECIPES / recipe),
        "--model_name_or_path", str(model or tiny_run["init"]), "--dataset_name", str(tiny_run["corpus"]),
        "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _load_without_plugin(tmp_path, checkpoint) -> str:
    code = f"""
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
path = {str(checkpoint)!r}
model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Describe it."}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=[Image.new("RGB", (64, 48), "red")], text=prompt, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
print("LOADED", type(model).__module__, out.shape[1] - inputs["input_ids"].shape[1])
"""
    return run_without_plugin(code, tmp_path, timeout=300).stdout


def test_cli_trains_a_tiny_recipe_and_checkpoints_load_without_the_plugin(tiny_run, tmp_path):
    out = tmp_path / "run"
    _train_cli(tiny_run, out)
    assert (out / "checkpoint-2" / "model.safetensors").is_file() and (out / "model.safetensors").is_file()
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(logged) == 4
    assert all(entry["samples_per_second"] > 0 and entry["tokens_per_second"] > 0 for entry in logged)
    stdout = _load_without_plugin(tmp_path, out / "checkpoint-2")
    assert "LOADED transformers_modules" in stdout and stdout.strip().endswith("3")

    # the pretrain policy held in the real run: frozen vision parts bit-identical, trained layer changed
    from safetensors.torch import load_file

    start, end = load_file(tiny_run["init"] / "model.safetensors"), load_file(out / "model.safetensors")
    for name in start:
        frozen = name.startswith("model.vision_tower.") and ".encoder.layers.1." not in name
        assert torch.equal(start[name], end[name]) == frozen, name


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tiny_run, tmp_path):
    from safetensors.torch import load_file

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    _train_cli(tiny_run, full)  # 4 steps, checkpoints at 2 and 4
    result = _train_cli(tiny_run, resumed, "--resume_from_checkpoint", str(full / "checkpoint-2"))
    state = json.loads((resumed / "checkpoint-4" / "trainer_state.json").read_text())
    assert not (resumed / "checkpoint-2").exists()  # steps 1-2 were not run again
    assert state["global_step"] == 4 and [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    assert "Trained stage pretrain: 4 steps, train loss" in result.stdout


# --------------------------------------------------------------------------- LoRA


def test_lora_training_and_merge_give_the_adapter_models_logits(tiny_run, processor, corpus, tmp_path):
    from peft import PeftModel

    from transformers_sharegpt4v.training import merge_lora

    adapter = tmp_path / "lora"
    _train_cli(
        tiny_run, adapter, "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "0.05",
        "--max_steps", "2", "--save_strategy", "no", recipe="tiny_finetune.yaml",
    )  # fmt: skip
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["modules_to_save"] == ["multi_modal_projector"]
    merged = merge_lora(adapter, tmp_path / "merged")
    batch = _collator(processor, max_length=None)([corpus[0], corpus[1]])
    batch.pop("labels")
    peft_model = PeftModel.from_pretrained(_model(tiny_run["init"]), str(adapter)).eval()
    base, merged_model = _model(tiny_run["init"]).eval(), _model(merged).eval()
    with torch.no_grad():
        expected, got, base_logits = peft_model(**batch).logits, merged_model(**batch).logits, base(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert (expected - base_logits).abs().max() > 1e-3  # the adapter did change the model
    assert not any("lora" in name for name in merged_model.state_dict())


# --------------------------------------------------------------------------- plain `trl sft`


def test_trl_vision_collator_with_assistant_only_loss_gives_our_labels(tiny_run, corpus):
    from transformers import AutoProcessor
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    processor = AutoProcessor.from_pretrained(tiny_run["init"], trust_remote_code=True)
    rows = [dict(corpus[i]) for i in (0, 3)]  # a one-turn and a two-turn conversation
    trl_batch = DataCollatorForVisionLanguageModeling(processor=processor, assistant_only_loss=True)(
        [dict(r) for r in rows]
    )
    ours = _collator(processor, max_length=None)(rows)
    assert torch.equal(trl_batch["input_ids"], ours["input_ids"])
    assert torch.equal(trl_batch["labels"], ours["labels"])
    assert torch.equal(trl_batch["pixel_values"], ours["pixel_values"])  # pad to square, as stage 2


def test_trl_sft_cli_on_a_plugin_checkpoint_without_the_plugin(tiny_run, tmp_path):
    out = tmp_path / "trl"
    command = [
        "trl", "sft", "--config", str(RECIPES / "trl_finetune.yaml"), "--model_name_or_path", str(tiny_run["init"]),
        "--dataset_name", str(tiny_run["corpus"]), "--output_dir", str(out), "--use_cpu", "true", "--bf16", "false",
        "--dtype", "float32", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1", "--activation_checkpointing", "false", "--save_strategy", "no",
    ]  # fmt: skip
    env = {**ENV, "PYTHONPATH": str(blocker_dir(tmp_path))}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (out / "model.safetensors").is_file() and (out / "modeling_sharegpt4v.py").is_file()


# --------------------------------------------------------------------------- DDP on CPU


@pytest.mark.slow
def test_ddp_two_processes_give_the_single_process_loss(tiny_run, tmp_path):
    def losses(output_dir, launcher, per_device):
        command = [
            *launcher, "-m", "transformers_sharegpt4v.training.cli", "--config", str(RECIPES / "tiny_finetune.yaml"),
            "--model_name_or_path", str(tiny_run["init"]), "--dataset_name", str(tiny_run["corpus"]),
            "--output_dir", str(output_dir), "--per_device_train_batch_size", str(per_device), "--max_steps", "2",
            "--save_steps", "2", "--dataloader_drop_last", "true", "--train_sampling_strategy", "sequential",
        ]  # fmt: skip
        result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
        state = json.loads((output_dir / "checkpoint-2" / "trainer_state.json").read_text())
        return [entry["loss"] for entry in state["log_history"] if "loss" in entry]

    single = losses(tmp_path / "one", [sys.executable], 4)
    # ddp_cpu.yaml uses accelerate's elastic launcher (see the file); the recipe's use_cpu=true -> gloo on CPU
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                  str(REPO / "examples" / "accelerate" / "ddp_cpu.yaml"), "--num_processes", "2"]  # fmt: skip
    double = losses(tmp_path / "two", accelerate, 2)
    assert len(single) == len(double) == 2
    for a, b in zip(single, double, strict=True):
        assert abs(a - b) < 1e-5, (single, double)
    from safetensors.torch import load_file

    one, two = (load_file(tmp_path / run / "checkpoint-2" / "model.safetensors") for run in ("one", "two"))
    for name in one:  # the same two optimizer steps
        torch.testing.assert_close(one[name], two[name], rtol=0, atol=1e-5, msg=name)


# --------------------------------------------------------------------------- sharegpt4v init


def test_init_assembles_clip_llama_and_projector(tiny_run, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from transformers_sharegpt4v.cli import main

    torch.manual_seed(1)
    projector = {
        "model.mm_projector.0.weight": torch.randn(32, 32),
        "model.mm_projector.0.bias": torch.randn(32),
        "model.mm_projector.2.weight": torch.randn(32, 32),
        "model.mm_projector.2.bias": torch.randn(32),
    }
    save_file(projector, tmp_path / "mm_projector.safetensors")
    out = tmp_path / "init"
    code = main([
        "init", str(out), "--vision", str(tiny_run["vit"]), "--llm", str(tiny_run["llm"]),
        "--projector", str(tmp_path / "mm_projector.safetensors"), "--text-config-json", '{"num_hidden_layers": 1}',
    ])  # fmt: skip
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert config["image_token_id"] == tokenizer.convert_tokens_to_ids("<image>") == 700
    assert config["text_config"]["num_hidden_layers"] == 1 and config["text_config"]["vocab_size"] == 704
    assert config["auto_map"]["AutoModelForImageTextToText"] == "modeling_sharegpt4v.ShareGPT4VForCausalLM"
    weights = load_file(out / "model.safetensors")
    vit, llm = load_file(tiny_run["vit"] / "model.safetensors"), load_file(tiny_run["llm"] / "model.safetensors")
    for key, tensor in vit.items():  # CLIPVisionModel keys: vision_model.*
        assert torch.equal(weights["model.vision_tower." + key.removeprefix("vision_model.")], tensor), key
    assert torch.equal(weights["model.language_model.embed_tokens.weight"][:700], llm["model.embed_tokens.weight"])
    assert torch.equal(weights["lm_head.weight"][:700], llm["lm_head.weight"])
    assert torch.equal(
        weights["model.language_model.layers.0.mlp.up_proj.weight"], llm["model.layers.0.mlp.up_proj.weight"]
    )
    assert not any(k.startswith("model.language_model.layers.1.") for k in weights)
    assert torch.equal(
        weights["model.multi_modal_projector.linear_1.weight"], projector["model.mm_projector.0.weight"]
    )
    assert torch.equal(weights["model.multi_modal_projector.linear_2.bias"], projector["model.mm_projector.2.bias"])


def test_init_command_speaks_only_for_itself(tiny_run, tmp_path):
    """`sharegpt4v init` grows the vocabulary with transformers' mean resizing, without transformers' note
    about it (or any other warning) on every run."""
    result = subprocess.run(
        [sys.executable, "-m", "transformers_sharegpt4v.cli", "init", str(tmp_path / "init"), "--vision",
         str(tiny_run["vit"]), "--llm", str(tiny_run["llm"])],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mean_resizing" not in result.stderr and "warn" not in result.stderr.lower(), result.stderr
    assert result.stdout.startswith("ShareGPT4V checkpoint written to")


def test_init_rejects_a_projector_of_the_wrong_shape(tiny_run, tmp_path):
    from safetensors.torch import save_file

    from transformers_sharegpt4v.training import init_checkpoint

    save_file({"mm_projector.0.weight": torch.zeros(64, 1024), "mm_projector.0.bias": torch.zeros(64),
               "mm_projector.2.weight": torch.zeros(64, 64), "mm_projector.2.bias": torch.zeros(64)},
              tmp_path / "p.safetensors")  # fmt: skip
    with pytest.raises(ValueError, match="does not fit"):
        init_checkpoint(tmp_path / "out", str(tiny_run["vit"]), str(tiny_run["llm"]), str(tmp_path / "p.safetensors"))


def test_mixed_batch_with_a_text_only_row(processor):
    text_only = {
        "id": "t",
        "images": [],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hi."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
        ],
    }
    rows = [_image_row([("What is it?", "A red square.")]), text_only]
    for padding_free in (False, True):
        batch = _collator(processor, padding_free=padding_free)(rows)
        assert batch["pixel_values"].shape[0] == 1
        assert int((batch["input_ids"] == processor.image_token_id).sum()) == 576
    with pytest.raises(ValueError, match="1 image placeholder"):
        _collator(processor).encode(dict(rows[0], images=[]))


def test_push_to_hub_then_load_without_the_plugin(tiny_run, tmp_path):
    from hub_server import LocalHub, run_with_hub

    with LocalHub(tmp_path / "hub") as hub:
        run_with_hub(
            hub,
            [
                sys.executable, "-m", "transformers_sharegpt4v.cli", "train", "--config",
                str(RECIPES / "tiny_finetune.yaml"), "--model_name_or_path", str(tiny_run["init"]),
                "--dataset_name", str(tiny_run["corpus"]), "--output_dir", str(tmp_path / "run"), "--max_steps", "1",
                "--save_strategy", "no", "--push_to_hub", "true", "--hub_model_id", "test-user/tiny-sharegpt4v",
            ],
            env={"OMP_NUM_THREADS": "1"},
            timeout=600,
        )  # fmt: skip
        loaded = run_with_hub(
            hub,
            script("""
from transformers import AutoModelForImageTextToText, AutoProcessor
model = AutoModelForImageTextToText.from_pretrained("test-user/tiny-sharegpt4v", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("test-user/tiny-sharegpt4v", trust_remote_code=True)
print("LOADED", type(model).__name__, type(processor).__name__)
"""),
            env={"PYTHONPATH": str(blocker_dir(tmp_path)), "OMP_NUM_THREADS": "1"},
        )
    assert "LOADED ShareGPT4VForCausalLM ShareGPT4VProcessor" in loaded.stdout
