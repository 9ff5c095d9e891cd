"""ShareGPT4VConfig / ShareGPT4VModel / ShareGPT4VForCausalLM against an independent re-implementation of
the original forward, plus the Auto classes, remote code, attention backends and generation."""

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config_kwargs
from no_plugin import run_without_plugin
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

import transformers_sharegpt4v
from transformers_sharegpt4v import (
    ShareGPT4VConfig,
    ShareGPT4VForCausalLM,
    ShareGPT4VModel,
    default_attn_implementation,
)

IMAGE_TOKEN = 700
SENTINEL = -200  # the original code's stand-in for <image>


def expand_sentinel(ids: list[int], n: int = 576) -> list[int]:
    out = []
    for i in ids:
        out.extend([IMAGE_TOKEN] * n if i == SENTINEL else [i])
    return out


def reference_logits(
    model: ShareGPT4VForCausalLM, ids: list[int], pixel_values: torch.Tensor, layers: tuple[int, ...] = (-2,)
) -> torch.Tensor:
    """The original ShareGPT4V forward, written from docs/reference.md ("Architecture") with stock CLIP and
    Llama modules:
    CLIP hidden_states[-2] without CLS -> Linear -> exact GELU -> Linear, spliced at the -200 sentinel.
    Several `layers`: their hidden states (each without CLS) concatenated along the features, as Llava does."""
    config = model.config
    sd = model.state_dict()
    clip = CLIPVisionModel(CLIPVisionConfig(**config.vision_config.to_dict())).eval()
    clip.load_state_dict(
        {k[len("model.vision_tower.") :]: v for k, v in sd.items() if k.startswith("model.vision_tower.")}
    )
    llama = LlamaForCausalLM(LlamaConfig(**config.text_config.to_dict())).eval()
    llama_sd = {
        "model." + k[len("model.language_model.") :]: v for k, v in sd.items() if k.startswith("model.language_model.")
    }
    llama_sd["lm_head.weight"] = sd["lm_head.weight"]
    llama.load_state_dict(llama_sd)
    with torch.no_grad():
        hidden_states = clip(pixel_values, output_hidden_states=True).hidden_states
        feats = torch.cat([hidden_states[layer][:, 1:] for layer in layers], dim=-1)
        p = "model.multi_modal_projector."
        feats = F.linear(feats, sd[p + "linear_1.weight"], sd[p + "linear_1.bias"])
        feats = F.linear(F.gelu(feats), sd[p + "linear_2.weight"], sd[p + "linear_2.bias"])
        embeds, image_index = [], 0
        for i in ids:
            if i == SENTINEL:
                embeds.append(feats[image_index])
                image_index += 1
            else:
                embeds.append(llama.model.embed_tokens(torch.tensor([i])))
        return llama(inputs_embeds=torch.cat(embeds)[None]).logits[0]


def test_config_defaults_are_sharegpt4v_7b():
    c = ShareGPT4VConfig()
    v, t = c.vision_config, c.text_config
    assert (v.model_type, v.hidden_size, v.num_hidden_layers, v.image_size, v.patch_size) == (
        "clip_vision_model",
        1024,
        24,
        336,
        14,
    )
    assert (t.model_type, t.hidden_size, t.num_hidden_layers, t.intermediate_size, t.rms_norm_eps) == (
        "llama",
        4096,
        32,
        11008,
        1e-5,
    )
    assert c.image_seq_length == 576 and c.vision_feature_layer == -2
    assert c.vision_feature_select_strategy == "default" and c.projector_hidden_act == "gelu"
    assert c.multimodal_projector_bias and not c.tie_word_embeddings and c.image_token_id == 32000


def test_config_validates_image_geometry():
    with pytest.raises(ValueError, match="image_seq_length=577 does not match"):
        ShareGPT4VConfig(image_seq_length=577)
    assert ShareGPT4VConfig(image_seq_length=577, vision_feature_select_strategy="full").image_seq_length == 577
    with pytest.raises(ValueError, match="image_seq_length=576 does not match.*224 / patch_size 14 gives 256"):
        ShareGPT4VConfig(vision_config={"image_size": 224, "patch_size": 14})
    with pytest.raises(ValueError, match="vision_feature_layer=0 .* is not supported"):
        ShareGPT4VConfig(vision_feature_layer=0)
    with pytest.raises(ValueError, match="vision_feature_layer=-30 is out of range"):
        ShareGPT4VConfig(vision_feature_layer=-30)


def test_config_takes_llavas_image_token_index(tmp_path):
    """LlavaConfig's field is `image_token_index` (with `image_token_id` as an alias): both names mean the
    one field here too, as keyword, attribute and config.json key."""
    for name in ("image_token_index", "image_token_id"):
        config, llava = ShareGPT4VConfig(**{name: 5}), LlavaConfig(**{name: 5})
        assert (config.image_token_id, config.image_token_index) == (llava.image_token_id, llava.image_token_index)
        assert config.image_token_id == 5
    config.image_token_index = 7
    assert config.image_token_id == 7 and config.to_dict()["image_token_id"] == 7
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["image_token_index"] = saved.pop("image_token_id") + 1  # a config.json written with Llava's name
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert ShareGPT4VConfig.from_pretrained(tmp_path).image_token_id == 8


@pytest.mark.parametrize("layers", [[-2, -1], [0, -2], [-1], (3, 1)])
def test_config_takes_a_list_of_vision_feature_layers(tmp_path, layers):
    config = ShareGPT4VConfig(vision_feature_layer=layers)
    assert (
        config.vision_feature_layer
        == list(layers)
        == LlavaConfig(vision_feature_layer=list(layers)).vision_feature_layer
    )
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.vision_feature_layer == list(layers) and loaded.to_dict() == dict(
        config.to_dict(), _name_or_path=str(tmp_path)
    )


@pytest.mark.parametrize(
    "layers, message",
    [
        ([], "non-empty list"),
        ("-2", "non-empty list"),
        ([-2, "x"], "non-empty list"),
        (True, "non-empty list"),
        ([-2, -26], r"vision_feature_layer=\[-2, -26\] is out of range .* 24 layers"),
        ([25], "out of range"),
    ],
)
def test_config_refuses_bad_vision_feature_layers(layers, message):
    with pytest.raises(ValueError, match=message):
        ShareGPT4VConfig(vision_feature_layer=layers)


def test_config_ties_embeddings_when_the_text_config_does():
    """As LlavaConfig: a llava-hf config of an LLM with tied embeddings says so only in text_config."""
    text = dict(tiny_config_kwargs()["text_config"], tie_word_embeddings=True)
    for tie in (True, False):
        kwargs = tiny_config_kwargs(text_config=dict(text, tie_word_embeddings=tie))
        llava = LlavaConfig(**dict(kwargs, image_token_index=kwargs.pop("image_token_id")))
        config = ShareGPT4VConfig(**kwargs)
        assert config.tie_word_embeddings is llava.tie_word_embeddings is tie
        model = ShareGPT4VForCausalLM(config)
        assert (model.lm_head.weight is model.get_input_embeddings().weight) is tie


def test_config_image_seq_length_must_be_an_int():
    with pytest.raises(ValueError, match="image_seq_length must be an int, got '576'"):
        ShareGPT4VConfig(image_seq_length="576")


@pytest.mark.parametrize("layers", [[-2, -1], [0, -2], [-1]])
def test_several_vision_feature_layers_match_llava_and_the_reference(layers):
    """As transformers' Llava: the hidden states of every listed layer, each without CLS, concatenated; the
    projector's input is hidden_size x the number of layers. Checked against Llava with the same weights and
    against the stock-CLIP reference forward."""
    kwargs = tiny_config_kwargs(vision_feature_layer=layers)
    torch.manual_seed(0)
    model = ShareGPT4VForCausalLM(ShareGPT4VConfig(**kwargs)).eval()
    assert model.model.multi_modal_projector.linear_1.in_features == 32 * len(layers)
    llava = LlavaForConditionalGeneration(LlavaConfig(**dict(kwargs, image_token_index=kwargs.pop("image_token_id"))))
    llava.load_state_dict(model.state_dict())
    ids = [1, 5, SENTINEL, 42, 9]
    pixel_values = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(3))
    input_ids = torch.tensor([expand_sentinel(ids)])
    with torch.no_grad():
        got = model(input_ids=input_ids, pixel_values=pixel_values).logits
        assert torch.equal(got, llava.eval()(input_ids=input_ids, pixel_values=pixel_values).logits)
        kwargs = dict(
            input_ids=input_ids, pixel_values=pixel_values, max_new_tokens=4, do_sample=False, pad_token_id=0
        )
        assert model.generate(**kwargs).tolist() == llava.generate(**kwargs).tolist()
    expected = reference_logits(model, ids, pixel_values, layers=tuple(layers))
    assert (got[0] - expected).abs().max().item() < 1e-5


def test_config_round_trip(tmp_path, tiny_config):
    tiny_config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, ShareGPT4VConfig)
    drop = {"_name_or_path"}
    assert {k: v for k, v in loaded.to_dict().items() if k not in drop} == {
        k: v for k, v in tiny_config.to_dict().items() if k not in drop
    }


def test_forward_matches_original_forward(tiny_model):
    torch.manual_seed(1)
    ids = [1, 5, 17, SENTINEL, 42, 9, 300, 2]
    pixel_values = torch.randn(1, 3, 336, 336)
    expected = reference_logits(tiny_model, ids, pixel_values)
    with torch.no_grad():
        got = tiny_model(input_ids=torch.tensor([expand_sentinel(ids)]), pixel_values=pixel_values).logits[0]
    assert got.shape == expected.shape == (len(ids) - 1 + 576, 704)
    assert (got - expected).abs().max().item() < 1e-5


def test_two_images_in_one_sequence_match_original(tiny_model):
    torch.manual_seed(2)
    ids = [1, SENTINEL, 8, 9, SENTINEL, 10]
    pixel_values = torch.randn(2, 3, 336, 336)
    expected = reference_logits(tiny_model, ids, pixel_values)
    with torch.no_grad():
        got = tiny_model(input_ids=torch.tensor([expand_sentinel(ids)]), pixel_values=pixel_values).logits[0]
    assert (got - expected).abs().max().item() < 1e-5


def test_backbone_does_the_merge(tiny_model):
    """TRL's SFTTrainer calls `model.model` directly: the backbone alone must merge the images."""
    ids = torch.tensor([expand_sentinel([1, SENTINEL, 5])])
    pixel_values = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        hidden = tiny_model.model(input_ids=ids, pixel_values=pixel_values).last_hidden_state
        text_only = tiny_model.model(input_ids=ids).last_hidden_state
        logits = tiny_model(input_ids=ids, pixel_values=pixel_values).logits
    assert isinstance(tiny_model.model, ShareGPT4VModel)
    assert torch.allclose(tiny_model.lm_head(hidden), logits, atol=1e-6)
    assert not torch.allclose(hidden, text_only)  # the image features really went in


@pytest.mark.parametrize("n_tokens", [575, 577, 1152])
def test_mismatched_image_tokens_raise(tiny_model, n_tokens):
    ids = torch.tensor([[1] + [IMAGE_TOKEN] * n_tokens + [5]])
    with pytest.raises(ValueError, match=rf"tokens: {n_tokens}, features: 576 \(1 image\(s\) x 576\)"):
        tiny_model(input_ids=ids, pixel_values=torch.randn(1, 3, 336, 336))


def test_loss_ignores_minus_100(tiny_model):
    ids = torch.tensor([expand_sentinel([1, SENTINEL, 5, 6, 7, 2])])
    labels = ids.clone()
    labels[:, :577] = -100  # BOS and the image span
    pixel_values = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        out = tiny_model(input_ids=ids, pixel_values=pixel_values, labels=labels)
    shift_logits, shift_labels = out.logits[0, :-1], labels[0, 1:]
    keep = shift_labels != -100
    expected = F.cross_entropy(shift_logits[keep], shift_labels[keep])
    assert keep.sum() == 4
    assert torch.allclose(out.loss, expected, atol=1e-6)


def greedy_without_cache(model, ids: torch.Tensor, pixel_values: torch.Tensor, steps: int) -> list[int]:
    out = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixel_values, use_cache=False).logits
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def test_generate_uses_kv_cache_and_encodes_images_once(tiny_model):
    ids = torch.tensor([expand_sentinel([1, 7, SENTINEL, 9, 11])])
    pixel_values = torch.randn(1, 3, 336, 336)
    calls = []
    hook = tiny_model.model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
    try:
        generated = tiny_model.generate(
            input_ids=ids, pixel_values=pixel_values, max_new_tokens=6, min_new_tokens=6, do_sample=False
        )
    finally:
        hook.remove()
    assert len(calls) == 1
    assert generated[0, ids.shape[1] :].tolist() == greedy_without_cache(tiny_model, ids, pixel_values, 6)


def test_batched_left_padded_generation_equals_one_by_one(tiny_model):
    prompts = [[1, SENTINEL, 5], [1, 9, 9, 4, SENTINEL, 6, 7, 8, 3], [1, SENTINEL, 12, 13, 14, 15]]
    torch.manual_seed(3)
    pixels = torch.randn(3, 3, 336, 336)
    singles = []
    for i, p in enumerate(prompts):
        ids = torch.tensor([expand_sentinel(p)])
        out = tiny_model.generate(
            input_ids=ids, pixel_values=pixels[i : i + 1], max_new_tokens=5, min_new_tokens=5, do_sample=False
        )
        singles.append(out[0, ids.shape[1] :].tolist())
    rows = [expand_sentinel(p) for p in prompts]
    width = max(map(len, rows))
    input_ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    out = tiny_model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=pixels,
        max_new_tokens=5,
        min_new_tokens=5,
        do_sample=False,
        pad_token_id=0,
    )
    assert out[:, width:].tolist() == singles


@pytest.mark.parametrize(
    "impl",
    ["eager", "sdpa", pytest.param("flex_attention", marks=pytest.mark.slow)],  # flex compiles: ~1 min on CPU
)
def test_attention_implementations_agree(tmp_path, tiny_model, impl):
    tiny_model.save_pretrained(tmp_path)
    model = ShareGPT4VForCausalLM.from_pretrained(tmp_path, attn_implementation=impl).eval()
    assert model.config._attn_implementation == impl
    assert model.model.language_model.config._attn_implementation == impl
    ids = torch.tensor([expand_sentinel([1, SENTINEL, 5, 6])])
    pixel_values = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        a = model(input_ids=ids, pixel_values=pixel_values).logits
        b = tiny_model(input_ids=ids, pixel_values=pixel_values).logits
    assert (a - b).abs().max().item() < 1e-4


def test_flash_attention_2_refused_cleanly_on_cpu(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    with pytest.raises((ImportError, ValueError), match="(?i)flash"):
        ShareGPT4VForCausalLM.from_pretrained(tmp_path, attn_implementation="flash_attention_2")


@pytest.mark.parametrize(
    "device,cuda,has_flash,expected",
    [
        ("cuda", True, True, "flash_attention_2"),
        ("cuda", True, False, "sdpa"),
        ("cpu", True, True, "sdpa"),
        (None, True, True, "flash_attention_2"),
        (None, False, True, "sdpa"),
        (None, False, False, "sdpa"),
    ],
)
def test_default_attn_implementation(monkeypatch, device, cuda, has_flash, expected):
    import importlib.util

    import transformers_sharegpt4v.modeling_sharegpt4v as modeling

    monkeypatch.setattr(modeling.torch.cuda, "is_available", lambda: cuda)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        modeling.importlib.util,
        "find_spec",
        lambda name, *a: (object() if has_flash else None) if name == "flash_attn" else real_find_spec(name, *a),
    )
    assert default_attn_implementation(device) == expected


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    torch.manual_seed(0)
    model = ShareGPT4VForCausalLM(tiny_config).train()
    ids = torch.tensor([expand_sentinel([1, SENTINEL, 5, 6, 7])])
    pixel_values = torch.randn(1, 3, 336, 336)

    def grads():
        model.zero_grad()
        model(input_ids=ids, pixel_values=pixel_values, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.is_activation_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    assert any(n.startswith("model.vision_tower.") for n in plain)
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-6), name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward(tmp_path, tiny_model, dtype):
    tiny_model.save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=dtype).eval()
    assert model.dtype == dtype and model.model.vision_tower.dtype == dtype
    ids = torch.tensor([expand_sentinel([1, SENTINEL, 5, 6])])
    pixel_values = torch.randn(1, 3, 336, 336)  # fp32 pixels are cast by the vision tower
    with torch.no_grad():
        low = model(input_ids=ids, pixel_values=pixel_values).logits
        full = tiny_model(input_ids=ids, pixel_values=pixel_values).logits
    assert low.dtype == dtype and torch.isfinite(low).all()
    assert (low.float() - full).abs().max().item() < 0.1


def test_device_map_auto(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert {"CLIPEncoderLayer", "LlamaDecoderLayer"} <= set(tiny_model._no_split_modules)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, device_map="auto")
    assert all(p.device.type == "cpu" for p in model.parameters())
    ids = torch.tensor([expand_sentinel([1, SENTINEL, 5])])
    pixel_values = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        assert torch.allclose(
            model(input_ids=ids, pixel_values=pixel_values).logits,
            tiny_model(input_ids=ids, pixel_values=pixel_values).logits,
            atol=1e-5,
        )


def test_no_split_modules_keep_blocks_whole(tiny_model):
    """What device_map="auto" does across several GPUs: plan with little memory on the first device."""
    from accelerate import infer_auto_device_map

    size = sum(p.numel() * p.element_size() for p in tiny_model.parameters())
    plan = infer_auto_device_map(
        tiny_model,
        max_memory={0: size // 3, 1: size // 3, "cpu": size * 4},
        no_split_module_classes=tiny_model._no_split_modules,
    )
    assert len(set(plan.values())) > 1  # really split
    for name in plan:
        # a split never lands inside one encoder/decoder layer
        assert not re.search(r"\.layers\.\d+\.", name), name


def test_auto_classes_with_plugin_installed(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is ShareGPT4VConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is ShareGPT4VModel
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path)) is ShareGPT4VForCausalLM
    assert type(AutoModelForImageTextToText.from_pretrained(tmp_path)) is ShareGPT4VForCausalLM
    from transformers import AutoImageProcessor

    from transformers_sharegpt4v import ShareGPT4VImageProcessor

    ShareGPT4VImageProcessor().save_pretrained(tmp_path)
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is ShareGPT4VImageProcessor


def test_every_auto_class_loads_with_remote_code_without_plugin(tmp_path, tiny_model):
    ckpt = tmp_path / "ckpt"
    tiny_model.save_pretrained(ckpt)
    assert {"configuration_sharegpt4v.py", "modeling_sharegpt4v.py"} <= {p.name for p in ckpt.iterdir()}
    ids = expand_sentinel([1, SENTINEL, 5, 6])
    torch.manual_seed(4)
    pixel_values = torch.randn(1, 3, 336, 336)
    torch.save(pixel_values, tmp_path / "pixels.pt")
    with torch.no_grad():
        expected = tiny_model(input_ids=torch.tensor([ids]), pixel_values=pixel_values).logits
    torch.save(expected, tmp_path / "expected.pt")
    result = run_without_plugin(
        f"""
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText
        path = {str(ckpt)!r}
        config = AutoConfig.from_pretrained(path, trust_remote_code=True)
        assert type(config).__name__ == 'ShareGPT4VConfig', type(config)
        assert type(AutoModel.from_pretrained(path, trust_remote_code=True)).__name__ == 'ShareGPT4VModel'
        for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
            model = auto.from_pretrained(path, trust_remote_code=True).eval()
            assert type(model).__name__ == 'ShareGPT4VForCausalLM', type(model)
            assert type(model).__module__.startswith('transformers_modules'), type(model).__module__
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([{ids}]), pixel_values=torch.load({str(tmp_path / "pixels.pt")!r})).logits
            assert (logits - torch.load({str(tmp_path / "expected.pt")!r})).abs().max() < 1e-5
        # a checkpoint saved from remote code carries the code and auto_map again
        model.save_pretrained({str(tmp_path / "again")!r})
        print('OK')
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")
    again = tmp_path / "again"
    assert {"configuration_sharegpt4v.py", "modeling_sharegpt4v.py"} <= {p.name for p in again.iterdir()}
    assert type(AutoModelForCausalLM.from_pretrained(again)) is ShareGPT4VForCausalLM


def test_package_registers_on_import():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    assert CONFIG_MAPPING["sharegpt4v"] is ShareGPT4VConfig
    assert transformers_sharegpt4v.__version__


@pytest.mark.parametrize(
    "unit_file, module, name",
    [
        ("configuration_sharegpt4v.py", "transformers.configuration_utils", "SubConfigSpec"),
        ("image_processing_sharegpt4v.py", "transformers.image_processing_backends", "PilBackend"),
    ],
)
def test_older_transformers_gets_the_version_to_install(unit_file, module, name, tmp_path):
    """A remote-code file on a transformers without the names it needs says which version to install."""
    path = Path(transformers_sharegpt4v.__file__).parent / unit_file
    code = f"""
        import importlib, importlib.util
        delattr(importlib.import_module({module!r}), {name!r})  # as on a transformers before 5.20
        spec = importlib.util.spec_from_file_location("unit_file", {str(path)!r})
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except ImportError as error:
            print(error)
        """
    result = run_without_plugin(code, tmp_path)
    assert "transformers>=5.20 (this is " in result.stdout and "pip install -U 'transformers>=5.20'" in result.stdout
