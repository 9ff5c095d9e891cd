"""`sharegpt4v convert`: llava-hf <-> plugin, and released ShareGPT4V / LLaVA-1.5 checkpoints -> plugin / llava-hf.

Parity is checked against models and forwards that do not go through the converter: transformers'
`LlavaForConditionalGeneration` on the same weights (llava-hf part), and an independent re-implementation of
the original ShareGPT4V forward on a tiny checkpoint written in exactly the released layout (CLIP
hidden_states[-2] without CLS -> Linear-GELU-Linear -> spliced at the -200 sentinel -> Llama).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURE_IMAGES, legacy_tokenizer_spec, tiny_config_kwargs
from no_plugin import run_without_plugin
from safetensors import safe_open
from transformers import (
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VForCausalLM
from transformers_sharegpt4v.cli import main as cli_main
from transformers_sharegpt4v.conversion import convert_checkpoint, write_safetensors_streaming

REPO = Path(__file__).resolve().parents[1]
IMAGE_ID = 700  # <image> after the 700-piece SentencePiece vocabulary
PAD_ID = 701
SENTINEL = -200
N_IMAGE = 576


def all_tensors(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():
                out[key] = handle.get_tensor(key)
    return out


def expand(ids: list[int]) -> list[int]:
    out = []
    for i in ids:
        out.extend([IMAGE_ID] * N_IMAGE if i == SENTINEL else [i])
    return out


def pixels(n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 336, 336, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------
# llava-hf <-> plugin
# ----------------------------------------------------------------------------------------------------------


def llava_tokenizer(llama_tokenizer_dir: Path):
    """The llava-hf recipe: the LLaMA tokenizer plus <image> (special) and <pad>."""
    from transformers import AddedToken

    tokenizer = AutoTokenizer.from_pretrained(llama_tokenizer_dir)
    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [IMAGE_ID, PAD_ID]
    return tokenizer


@pytest.fixture(scope="module")
def llava_hf_dir(llama_tokenizer_dir, tmp_path_factory) -> Path:
    """A tiny llava-hf checkpoint as `LlavaForConditionalGeneration.save_pretrained` writes it, with its
    LlavaProcessor (plain CLIP image processor, no pad: what llava-hf ships)."""
    folder = tmp_path_factory.mktemp("llava_hf")
    kwargs = tiny_config_kwargs()
    kwargs["image_token_index"] = kwargs.pop("image_token_id")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(LlavaConfig(**kwargs)).eval()
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_center_crop=True
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=llava_tokenizer(llama_tokenizer_dir),
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def plugin_dir(llava_hf_dir, tmp_path_factory) -> Path:
    return convert_checkpoint(llava_hf_dir, tmp_path_factory.mktemp("conv") / "plugin")


def test_llava_hf_to_plugin_logits_and_greedy_match_llava(llava_hf_dir, plugin_dir):
    llava = LlavaForConditionalGeneration.from_pretrained(llava_hf_dir).eval()
    plugin = ShareGPT4VForCausalLM.from_pretrained(plugin_dir).eval()
    assert type(plugin) is ShareGPT4VForCausalLM and plugin.config.image_token_id == IMAGE_ID
    ids = torch.tensor([expand([1, 45, 67, SENTINEL, 89, 101, 13])])
    pv = pixels()
    with torch.no_grad():
        expected = llava(input_ids=ids, pixel_values=pv).logits
        got = plugin(input_ids=ids, pixel_values=pv).logits
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-5
    kwargs = dict(input_ids=ids, pixel_values=pv, max_new_tokens=8, do_sample=False, pad_token_id=PAD_ID)
    with torch.no_grad():
        assert plugin.generate(**kwargs).tolist() == llava.generate(**kwargs).tolist()


def test_left_padded_batched_generation_equals_one_by_one(plugin_dir):
    model = ShareGPT4VForCausalLM.from_pretrained(plugin_dir).eval()
    prompts = [
        expand([1, 45, SENTINEL, 13]),
        expand([1, SENTINEL, 90, 91, 92, 93, 94, 95, 96]),
        expand([1, 30, 31, 32, SENTINEL, 60, 61]),
    ]
    pv = pixels(3, seed=1)
    single = []
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            out = model.generate(
                input_ids=torch.tensor([prompt]), pixel_values=pv[i : i + 1], max_new_tokens=6, do_sample=False
            )
            single.append(out[0, len(prompt) :].tolist())
        width = max(map(len, prompts))
        ids = torch.tensor([[PAD_ID] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        batched = model.generate(
            input_ids=ids, attention_mask=mask, pixel_values=pv, max_new_tokens=6, do_sample=False, pad_token_id=PAD_ID
        )
    assert [row[width:].tolist() for row in batched] == single


def test_plugin_folder_has_padding_processor_and_remote_code(plugin_dir):
    names = {p.name for p in plugin_dir.iterdir()}
    assert {"configuration_sharegpt4v.py", "modeling_sharegpt4v.py", "model.safetensors", "README.md"} <= names
    assert "generation_config.json" in names
    config = json.loads((plugin_dir / "config.json").read_text())
    assert config["model_type"] == "sharegpt4v" and config["auto_map"]["AutoModelForCausalLM"]
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(plugin_dir)
    assert type(processor).__name__ == "ShareGPT4VProcessor"
    assert processor.image_processor.do_pad is True  # the llava-hf source did not pad
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == IMAGE_ID


def test_round_trip_plugin_llava_hf_plugin_is_bit_exact(llava_hf_dir, plugin_dir, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="transformers_sharegpt4v.conversion"):
        hf = convert_checkpoint(plugin_dir, tmp_path / "hf", to="llava-hf")
    # A plugin source's (vicuna_v1) template is replaced by the one written for whole-string tokenization.
    shipped = REPO / "transformers_sharegpt4v" / "chat_templates" / "vicuna_v1_llava_hf.jinja"
    assert LlavaProcessor.from_pretrained(hf).chat_template == shipped.read_text(encoding="utf-8")
    assert "chat template" not in caplog.text  # the plugin's template was the shipped vicuna_v1: nothing lost
    back = convert_checkpoint(hf, tmp_path / "back")
    original, exported, returned = all_tensors(plugin_dir), all_tensors(hf), all_tensors(back)
    # The export uses the llava-hf Hub key layout (what vLLM / SGLang / llava-hf/llava-1.5-7b-hf use).
    assert (
        "language_model.lm_head.weight" in exported and "vision_tower.vision_model.post_layernorm.weight" in exported
    )
    assert set(returned) == set(original)
    for key, tensor in original.items():
        assert returned[key].dtype == tensor.dtype and torch.equal(returned[key], tensor), key
    # ... and they are the llava-hf source's weights, bit for bit (as transformers itself loads them).
    source = LlavaForConditionalGeneration.from_pretrained(llava_hf_dir).state_dict()
    assert set(source) == set(original) and all(torch.equal(source[k], original[k]) for k in source)
    for field in ("image_token_id", "image_seq_length", "vision_feature_layer", "vision_feature_select_strategy"):
        assert (
            json.loads((back / "config.json").read_text())[field]
            == json.loads((plugin_dir / "config.json").read_text())[field]
        )
    model, info = LlavaForConditionalGeneration.from_pretrained(hf, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert LlavaProcessor.from_pretrained(hf).image_processor.do_pad is True


def test_plugin_loads_with_trust_remote_code_without_the_plugin(plugin_dir, tmp_path):
    ids = torch.tensor([expand([1, 45, SENTINEL, 13])])
    pv = pixels()
    with torch.no_grad():
        expected = LlavaForConditionalGeneration.from_pretrained(
            convert_checkpoint(plugin_dir, tmp_path / "hf", to="llava-hf")
        )(input_ids=ids, pixel_values=pv).logits
    torch.save({"ids": ids, "pv": pv, "expected": expected}, tmp_path / "inputs.pt")
    run_without_plugin(
        f"""
        import torch
        from transformers import AutoModelForCausalLM, AutoProcessor
        model = AutoModelForCausalLM.from_pretrained({str(plugin_dir)!r}, trust_remote_code=True).eval()
        assert type(model).__name__ == "ShareGPT4VForCausalLM", type(model)
        data = torch.load("inputs.pt")
        with torch.no_grad():
            logits = model(input_ids=data["ids"], pixel_values=data["pv"]).logits
        assert (logits - data["expected"]).abs().max() < 1e-5
        processor = AutoProcessor.from_pretrained({str(plugin_dir)!r}, trust_remote_code=True)
        assert type(processor).__name__ == "ShareGPT4VProcessor" and processor.image_processor.do_pad
        """,
        tmp_path,
    )


def test_cli_convert_and_dtype(plugin_dir, tmp_path, capsys):
    assert (
        cli_main(["convert", str(plugin_dir), str(tmp_path / "bf16"), "--to", "llava-hf", "--dtype", "bfloat16"]) == 0
    )
    assert "Converted" in capsys.readouterr().out
    tensors = all_tensors(tmp_path / "bf16")
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    # An existing non-empty destination is refused, with the reason.
    assert cli_main(["convert", str(plugin_dir), str(tmp_path / "bf16")]) == 2
    captured = capsys.readouterr()
    assert "sharegpt4v convert: error:" in captured.err and "not empty" in captured.err
    assert captured.out == ""  # errors go to stderr, not into the output a script may parse


def test_sharded_output_with_index(plugin_dir, tmp_path):
    out = convert_checkpoint(plugin_dir, tmp_path / "sharded", max_shard_size=200_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and all((out / s).is_file() for s in shards)
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    original = all_tensors(plugin_dir)
    assert set(index["weight_map"]) == set(original)
    model = ShareGPT4VForCausalLM.from_pretrained(out)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in original.items())


def test_streaming_safetensors_writer_is_read_back_exactly(tmp_path):
    tensors = {
        "a": torch.randn(3, 5),
        "b": torch.randn(7).to(torch.bfloat16),
        "c": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "d": torch.tensor(1.5, dtype=torch.float16),
        "e": torch.randn(4, 4).t(),  # not contiguous
    }
    entries = [(k, tuple(v.shape), v.dtype, (lambda v=v: v)) for k, v in tensors.items()]
    write_safetensors_streaming(tmp_path / "x.safetensors", entries)
    with safe_open(tmp_path / "x.safetensors", framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
        for key, tensor in tensors.items():
            got = handle.get_tensor(key)
            assert got.dtype == tensor.dtype and torch.equal(got, tensor), key


def test_llava_with_several_feature_layers_is_refused(llava_hf_dir, tmp_path):
    src = tmp_path / "multi"
    shutil.copytree(llava_hf_dir, src)
    config = json.loads((src / "config.json").read_text())
    config["vision_feature_layer"] = [-2, -5]
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="vision_feature_layer"):
        convert_checkpoint(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))


# ----------------------------------------------------------------------------------------------------------
# Released ShareGPT4V / LLaVA-1.5 checkpoints
# ----------------------------------------------------------------------------------------------------------

ORIGINAL_VOCAB = 700  # the tiny SentencePiece vocabulary; the released one has 32000
HIDDEN = 32

RELEASED_TOKENIZER_CONFIG = {  # what the released repos ship (LlamaTokenizer, no <image>, pad = null)
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": "<s>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "</s>",
    "legacy": False,
    "model_max_length": 2048,
    "pad_token": None,
    "padding_side": "right",
    "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer",
    "unk_token": "<unk>",
}


def write_released_checkpoint(
    root: Path, spm_model_file: Path, seed: int = 0, vocab_size: int = ORIGINAL_VOCAB, **config_overrides
) -> tuple[Path, Path]:
    """A tiny ShareGPT4V checkpoint in exactly the released layout: LLM folder (share4v config with mm_* fields,
    two pickled shards + index with LLaMA keys, rotary inv_freq buffers and model.mm_projector.{0,2}, the
    SentencePiece tokenizer) and a SEPARATE vision tower folder (CLIPVisionModel config, vision_model.* keys,
    CLIP preprocessor_config.json)."""
    generator = torch.Generator().manual_seed(seed)
    llm_dir, vit_dir = root / "ShareGPT4V-tiny", root / "ShareGPT4V-tiny_vit-large336-l12"
    llm_dir.mkdir(parents=True)
    vit_dir.mkdir(parents=True)

    vision_config = CLIPVisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=336,
        patch_size=14,
        projection_dim=HIDDEN,
    )
    torch.manual_seed(seed)
    clip = CLIPVisionModel(vision_config)
    torch.save({"vision_model." + k: v.clone() for k, v in clip.state_dict().items()}, vit_dir / "pytorch_model.bin")
    vit_config = vision_config.to_dict()
    vit_config.update(architectures=["CLIPVisionModel"], model_type="clip_vision_model", torch_dtype="float32")
    (vit_dir / "config.json").write_text(json.dumps(vit_config))
    (vit_dir / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": 336,
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "resample": 3,
                "size": 336,
            }
        )
    )

    text = dict(
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=vocab_size,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
    )
    llama = LlamaForCausalLM(LlamaConfig(**text))
    state = {k: v.clone() for k, v in llama.state_dict().items()}
    for name in ("model.embed_tokens.weight", "lm_head.weight"):  # larger than the default init: distinct logits
        state[name] = torch.randn(state[name].shape, generator=generator) * 0.5
    for i in range(text["num_hidden_layers"]):  # transformers 4.31 saved these buffers
        state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = 1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8)
    state["model.mm_projector.0.weight"] = torch.randn(HIDDEN, HIDDEN, generator=generator) * 0.2
    state["model.mm_projector.0.bias"] = torch.randn(HIDDEN, generator=generator) * 0.2
    state["model.mm_projector.2.weight"] = torch.randn(HIDDEN, HIDDEN, generator=generator) * 0.2
    state["model.mm_projector.2.bias"] = torch.randn(HIDDEN, generator=generator) * 0.2
    keys = list(state)
    shards = {
        "pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
        "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2 :],
    }
    for name, shard_keys in shards.items():
        torch.save({k: state[k] for k in shard_keys}, llm_dir / name)
    index = {
        "metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
        "weight_map": {k: name for name, shard_keys in shards.items() for k in shard_keys},
    }
    (llm_dir / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    config = dict(
        text,
        _name_or_path="Lin-Chen/ShareGPT4V-tiny",
        architectures=["Share4VLlamaForCausalLM"],
        model_type="share4v",
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        hidden_act="silu",
        initializer_range=0.02,
        pretraining_tp=1,
        rope_scaling=None,
        tie_word_embeddings=False,
        torch_dtype="float32",
        transformers_version="4.31.0",
        use_cache=True,
        freeze_mm_mlp_adapter=False,
        image_aspect_ratio="pad",
        image_grid_pinpoints=None,
        mm_hidden_size=HIDDEN,
        mm_projector_type="mlp2x_gelu",
        mm_use_im_patch_token=False,
        mm_use_im_start_end=False,
        mm_vision_select_feature="patch",
        mm_vision_select_layer=-2,
        mm_vision_tower=str(vit_dir),
        tune_mm_mlp_adapter=False,
        use_mm_proj=True,
    )
    config.update(config_overrides)
    (llm_dir / "config.json").write_text(json.dumps(config, indent=2))
    (llm_dir / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})
    )
    shutil.copy(spm_model_file, llm_dir / "tokenizer.model")
    (llm_dir / "tokenizer_config.json").write_text(json.dumps(RELEASED_TOKENIZER_CONFIG))
    (llm_dir / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"})
    )
    return llm_dir, vit_dir


def original_logits(llm_dir: Path, vit_dir: Path, ids: list[int], pixel_values: torch.Tensor) -> torch.Tensor:
    """The original ShareGPT4V forward re-implemented from docs/reference.md ("Architecture", "Released
    checkpoint layout") on the released files, with stock transformers modules: CLIP
    hidden_states[select_layer] (CLS dropped for "patch") -> Linear -> exact GELU -> Linear, the features
    spliced in at each -200 sentinel, Llama on inputs_embeds."""
    config = json.loads((llm_dir / "config.json").read_text())
    state = {}
    for shard in sorted(llm_dir.glob("pytorch_model-*.bin")):
        state.update(torch.load(shard, weights_only=True))
    llama = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_hidden_layers=config["num_hidden_layers"],
            num_attention_heads=config["num_attention_heads"],
            num_key_value_heads=config["num_key_value_heads"],
            vocab_size=config["vocab_size"],
            max_position_embeddings=config["max_position_embeddings"],
            rms_norm_eps=config["rms_norm_eps"],
        )
    ).eval()
    llama.load_state_dict({k: v for k, v in state.items() if "mm_projector" not in k and "inv_freq" not in k})
    clip = CLIPVisionModel.from_pretrained(vit_dir).eval()
    with torch.no_grad():
        hidden = clip(pixel_values, output_hidden_states=True).hidden_states[config["mm_vision_select_layer"]]
        if config["mm_vision_select_feature"] == "patch":
            hidden = hidden[:, 1:]
        p = "model.mm_projector."
        features = F.linear(
            F.gelu(F.linear(hidden, state[p + "0.weight"], state[p + "0.bias"])),
            state[p + "2.weight"],
            state[p + "2.bias"],
        )
        pieces, image = [], 0
        for token in ids:
            if token == SENTINEL:
                pieces.append(features[image])
                image += 1
            else:
                pieces.append(llama.model.embed_tokens(torch.tensor([token])))
        return llama(inputs_embeds=torch.cat(pieces)[None]).logits[0]


@pytest.fixture(scope="module")
def released(spm_model_file, tmp_path_factory) -> tuple[Path, Path]:
    return write_released_checkpoint(tmp_path_factory.mktemp("released"), spm_model_file)


@pytest.fixture(scope="module")
def converted_original(released, tmp_path_factory) -> Path:
    llm_dir, _ = released
    return convert_checkpoint(llm_dir, tmp_path_factory.mktemp("converted") / "ShareGPT4V-tiny-plugin")


def image_prompts() -> list[list[int]]:
    return [[1, 45, 67, SENTINEL, 13, 89, 101, 102], [1, SENTINEL, 30, 31, 32]]


def test_released_checkpoint_converts_to_plugin_with_original_parity_without_plugin(
    released, converted_original, tmp_path
):
    llm_dir, vit_dir = released
    cases = []
    for seed, ids in enumerate(image_prompts()):
        pv = pixels(seed=seed)
        cases.append(
            {"ids": torch.tensor([expand(ids)]), "pv": pv, "expected": original_logits(llm_dir, vit_dir, ids, pv)}
        )
    torch.save(cases, tmp_path / "cases.pt")
    run_without_plugin(
        f"""
        import torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(converted_original)!r}, trust_remote_code=True).eval()
        assert type(model).__name__ == "ShareGPT4VForCausalLM" and model.config.text_config.vocab_size == 704
        for case in torch.load("cases.pt"):
            with torch.no_grad():
                logits = model(input_ids=case["ids"], pixel_values=case["pv"]).logits[0]
            # every original id within 1e-4 ...
            assert (logits[:, :{ORIGINAL_VOCAB}] - case["expected"]).abs().max() < 1e-4
            # ... and the appended rows never win: greedy choices over the full vocabulary are the original's
            assert torch.equal(logits.argmax(-1), case["expected"].argmax(-1))
        """,
        tmp_path,
    )


def test_released_checkpoint_to_llava_hf_matches_original(released, tmp_path):
    llm_dir, vit_dir = released
    out = convert_checkpoint(llm_dir, tmp_path / "hf", to="llava-hf", vision_tower=vit_dir)
    model = LlavaForConditionalGeneration.from_pretrained(out).eval()
    for seed, ids in enumerate(image_prompts()):
        pv = pixels(seed=seed)
        expected = original_logits(llm_dir, vit_dir, ids, pv)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([expand(ids)]), pixel_values=pv).logits[0]
        assert (logits[:, :ORIGINAL_VOCAB] - expected).abs().max() < 1e-4
    processor = LlavaProcessor.from_pretrained(out)
    assert processor.image_processor.do_pad is True
    assert processor.tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [IMAGE_ID, PAD_ID]


@pytest.mark.parametrize("aspect", ["pad", "square"])
def test_llava_hf_export_config_says_how_images_are_padded(spm_model_file, tmp_path, aspect):
    """SGLang pads only if config.json says image_aspect_ratio "pad"; vLLM reads the processor's do_pad: the
    export states the source's setting in both places, and transformers still loads it."""
    llm_dir, _ = write_released_checkpoint(tmp_path / "src", spm_model_file, image_aspect_ratio=aspect)
    out = convert_checkpoint(llm_dir, tmp_path / "hf", to="llava-hf")
    assert json.loads((out / "config.json").read_text())["image_aspect_ratio"] == aspect
    assert json.loads((out / "preprocessor_config.json").read_text())["do_pad"] is (aspect == "pad")
    assert LlavaProcessor.from_pretrained(out).image_processor.do_pad is (aspect == "pad")
    model, info = LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    assert model.config.image_aspect_ratio == aspect


def test_released_conversion_vocab_tokenizer_and_files(released, converted_original, spm_model_file):
    import sentencepiece as spm

    llm_dir, _ = released
    tensors = all_tensors(converted_original)
    assert not any("inv_freq" in k or "mm_projector" in k for k in tensors)
    original = {}
    for shard in sorted(llm_dir.glob("pytorch_model-*.bin")):
        original.update(torch.load(shard, weights_only=True))
    for new, old in (
        ("model.language_model.embed_tokens.weight", "model.embed_tokens.weight"),
        ("lm_head.weight", "lm_head.weight"),
    ):
        assert tensors[new].shape == (704, HIDDEN)
        assert torch.equal(tensors[new][:ORIGINAL_VOCAB], original[old])
        # documented init of the 4 new rows (<image>, <pad>, 2 padding): the mean of the original rows
        assert torch.allclose(tensors[new][ORIGINAL_VOCAB:], original[old].mean(0).expand(4, -1), atol=1e-6)
    assert torch.equal(tensors["model.multi_modal_projector.linear_2.bias"], original["model.mm_projector.2.bias"])
    config = json.loads((converted_original / "config.json").read_text())
    assert (config["image_token_id"], config["text_config"]["vocab_size"], config["text_config"]["pad_token_id"]) == (
        IMAGE_ID,
        704,
        PAD_ID,
    )
    assert (
        config["vision_feature_layer"],
        config["vision_feature_select_strategy"],
        config["image_aspect_ratio"],
    ) == (
        -2,
        "default",
        "pad",
    )
    generation = json.loads((converted_original / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (1, 2, PAD_ID)
    tokenizer = AutoTokenizer.from_pretrained(converted_original)
    sp = spm.SentencePieceProcessor(model_file=str(spm_model_file))
    for text in (
        "A chat between a curious user and an artificial intelligence assistant.",
        "USER: two cats?\nASSISTANT: yes",
    ):
        assert tokenizer(text).input_ids == [1] + sp.encode(text)
    assert tokenizer("x <image>\ny").input_ids.count(IMAGE_ID) == 1
    card = (converted_original / "README.md").read_text()
    assert "trust_remote_code=True" in card and str(llm_dir) in card and "license:" in card


def test_cls_patch_select_feature_becomes_full(spm_model_file, tmp_path):
    llm_dir, vit_dir = write_released_checkpoint(tmp_path, spm_model_file, mm_vision_select_feature="cls_patch")
    out = convert_checkpoint(llm_dir, tmp_path / "out")
    model = ShareGPT4VForCausalLM.from_pretrained(out).eval()
    assert (model.config.vision_feature_select_strategy, model.config.image_seq_length) == ("full", 577)
    ids = [1, 45, SENTINEL, 13]
    pv = pixels()
    expected = original_logits(llm_dir, vit_dir, ids, pv)
    expanded = []
    for token in ids:
        expanded.extend([IMAGE_ID] * 577 if token == SENTINEL else [token])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([expanded]), pixel_values=pv).logits[0]
    assert (logits[:, :ORIGINAL_VOCAB] - expected).abs().max() < 1e-4


def _edit_config(llm_dir: Path, **changes) -> None:
    config = json.loads((llm_dir / "config.json").read_text())
    config.update(changes)
    (llm_dir / "config.json").write_text(json.dumps(config))


def _edit_weights(llm_dir: Path, edit) -> None:
    index_path = llm_dir / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    for shard in sorted(llm_dir.glob("pytorch_model-*.bin")):
        state = torch.load(shard, weights_only=True)
        edit(state, shard.name)
        torch.save(state, shard)
    index["weight_map"] = {
        k: s.name for s in sorted(llm_dir.glob("pytorch_model-*.bin")) for k in torch.load(s, weights_only=True)
    }
    index_path.write_text(json.dumps(index))


def _drop(key):
    return lambda state, name: state.pop(key, None)


def _add(key, tensor):
    return lambda state, name: state.update({key: tensor}) if name.endswith("00002.bin") else None


def _wide_projector(state, name):  # a projector trained for a wider LLM ("a 13B LLM with a 7B projector")
    if "model.mm_projector.0.weight" in state:
        state["model.mm_projector.0.weight"] = torch.zeros(48, HIDDEN)
    if "model.mm_projector.0.bias" in state:
        state["model.mm_projector.0.bias"] = torch.zeros(48)


@pytest.mark.parametrize(
    ("config_changes", "weight_edit", "match"),
    [
        ({"mm_projector_type": "linear"}, None, "mm_projector_type 'linear'"),
        ({"mm_projector_type": "mlp3x_gelu"}, None, "mm_projector_type 'mlp3x_gelu'"),
        ({"mm_vision_select_feature": "cls"}, None, "mm_vision_select_feature 'cls'"),
        ({"mm_hidden_size": 64}, None, "mm_hidden_size is 64 .* hidden_size 32"),
        ({"mm_use_im_start_end": True}, None, "mm_use_im_start_end"),
        ({"mm_vision_select_layer": -9}, None, "mm_vision_select_layer -9"),
        ({"image_aspect_ratio": "anyres"}, None, "image_aspect_ratio 'anyres'"),
        ({"vocab_size": 800}, None, "tokenizer has 700 tokens .* vocab_size is 800"),
        ({}, _drop("model.layers.1.mlp.up_proj.weight"), "missing .*model.language_model.layers.1.mlp.up_proj.weight"),
        (
            {},
            _add("model.layers.0.self_attn.extra_adapter.weight", torch.zeros(2)),
            "extra weight 'model.layers.0.self_attn.extra_adapter.weight'",
        ),
        ({}, _add("model.mm_projector.4.weight", torch.zeros(2)), "'model.mm_projector.4.weight'.*layer 4"),
        ({}, _wide_projector, "'model.mm_projector.0.(weight|bias)' has shape \\[48.*7B projector with a 13B LLM"),
    ],
)
def test_released_checkpoint_refusals_name_the_field_or_key(
    spm_model_file, tmp_path, config_changes, weight_edit, match
):
    llm_dir, _ = write_released_checkpoint(tmp_path, spm_model_file)
    _edit_config(llm_dir, **config_changes)
    if weight_edit is not None:
        _edit_weights(llm_dir, weight_edit)
    with pytest.raises(ValueError, match=match):
        convert_checkpoint(llm_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))


def test_vision_tower_flag_overrides_mm_vision_tower_and_bad_ids_are_explained(released, tmp_path):
    llm_dir, vit_dir = released
    src = tmp_path / "src"
    shutil.copytree(llm_dir, src)
    _edit_config(src, mm_vision_tower="Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12")
    # offline (HF_HUB_OFFLINE=1) and not cached: a clear error naming the repo and what to do
    with pytest.raises(
        ValueError,
        match="vision tower 'Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12' is not a local folder.*HF_HUB_OFFLINE",
    ):
        convert_checkpoint(src, tmp_path / "out")
    with pytest.raises(ValueError, match="SRC 'someone/not-downloaded' is not a local folder"):
        convert_checkpoint("someone/not-downloaded", tmp_path / "out")
    assert cli_main(["convert", str(src), str(tmp_path / "out"), "--vision-tower", str(vit_dir)]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "sharegpt4v"


def test_llava_15_layout_with_safetensors_and_full_clip_tower_gives_the_same_weights(
    released, converted_original, tmp_path
):
    """LLaVA-1.5 flavour of the layout: model_type "llava", safetensors shards + index, and a full CLIPModel
    repo as vision tower (openai/clip-vit-large-patch14-336: model_type "clip", text half included)."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    llm_dir, vit_dir = released
    src, vit = tmp_path / "llava-v1.5-tiny", tmp_path / "clip-vit-tiny-336"
    shutil.copytree(llm_dir, src)
    weight_map = {}
    for shard in sorted(src.glob("pytorch_model-*.bin")):
        state = torch.load(shard, weights_only=True)
        name = shard.name.replace("pytorch_model", "model").replace(".bin", ".safetensors")
        save_file({k: v.contiguous() for k, v in state.items()}, src / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(state, name))
        shard.unlink()
    (src / "pytorch_model.bin.index.json").unlink()
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    vision = json.loads((vit_dir / "config.json").read_text())
    vit.mkdir()
    clip_config = CLIPConfig(
        text_config=dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
        vision_config={k: v for k, v in vision.items() if k not in ("architectures", "model_type", "torch_dtype")},
        projection_dim=HIDDEN,
    )
    full = CLIPModel(clip_config).state_dict()
    full.update(torch.load(vit_dir / "pytorch_model.bin", weights_only=True))
    assert any(k.startswith("text_model.") for k in full) and "logit_scale" in full
    save_file({k: v.contiguous() for k, v in full.items()}, vit / "model.safetensors", metadata={"format": "pt"})
    (vit / "config.json").write_text(json.dumps(dict(clip_config.to_dict(), architectures=["CLIPModel"])))
    shutil.copy(vit_dir / "preprocessor_config.json", vit / "preprocessor_config.json")
    _edit_config(src, model_type="llava", architectures=["LlavaLlamaForCausalLM"], mm_vision_tower=str(vit))

    out = convert_checkpoint(src, tmp_path / "out")
    expected, got = all_tensors(converted_original), all_tensors(out)
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_vision_tower_saved_by_todays_clip_vision_model_converts_like_the_released_layout(
    released, converted_original, tmp_path
):
    """transformers >= 5.24 saves a CLIPVisionModel without the `vision_model.` prefix that the released
    Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12 (and the fixture) has: both layouts give the same weights."""
    llm_dir, vit_dir = released
    old = torch.load(vit_dir / "pytorch_model.bin", weights_only=True)
    assert all(key.startswith("vision_model.") for key in old)
    # Built fresh: a model loaded from the old layout would be saved back in that layout.
    model = CLIPVisionModel(CLIPVisionConfig.from_pretrained(vit_dir))
    model.load_state_dict({key[len("vision_model.") :]: value for key, value in old.items()})
    resaved = tmp_path / "vit-resaved"
    model.save_pretrained(resaved)
    shutil.copy(vit_dir / "preprocessor_config.json", resaved)
    with safe_open(resaved / "model.safetensors", framework="pt") as handle:
        new_keys = set(handle.keys())
    assert "embeddings.class_embedding" in new_keys and not any(k.startswith("vision_model.") for k in new_keys)

    out = tmp_path / "out"
    assert cli_main(["convert", str(llm_dir), str(out), "--vision-tower", str(resaved)]) == 0
    expected, got = all_tensors(converted_original), all_tensors(out)
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_vision_tower_with_unknown_weights_is_refused(released, tmp_path):
    llm_dir, vit_dir = released
    vit = tmp_path / "vit"
    shutil.copytree(vit_dir, vit)
    state = torch.load(vit / "pytorch_model.bin", weights_only=True)
    state["adapter.weight"] = torch.zeros(2)
    torch.save(state, vit / "pytorch_model.bin")
    with pytest.raises(ValueError, match="unexpected weight 'adapter.weight' in the vision tower"):
        convert_checkpoint(llm_dir, tmp_path / "out", vision_tower=vit)


def test_vision_tower_saved_inside_the_llm_checkpoint_is_used(released, tmp_path):
    """Checkpoints trained with an unfrozen tower (stage 1) may hold it as model.vision_tower.vision_tower.*;
    those weights win over the separate folder, which then only provides the config and preprocessing."""
    llm_dir, vit_dir = released
    src = tmp_path / "src"
    shutil.copytree(llm_dir, src)
    tower = torch.load(vit_dir / "pytorch_model.bin", weights_only=True)
    tuned = {"model.vision_tower.vision_tower." + k: v + 1.0 for k, v in tower.items()}
    _edit_weights(src, lambda state, name: state.update(tuned) if name.endswith("00002.bin") else None)
    got = all_tensors(convert_checkpoint(src, tmp_path / "out"))
    for key, value in tower.items():
        assert torch.equal(got["model.vision_tower." + key[len("vision_model.") :]], value + 1.0), key


def test_converted_processor_feeds_the_ids_the_original_code_fed(converted_original, spm_model_file):
    """The converted tokenizer + processor give the original ids for a vicuna_v1 prompt: split on <image>, each
    piece SentencePiece-encoded on its own (BOS on the first only), 576 image tokens where the sentinel was."""
    import sentencepiece as spm
    from PIL import Image
    from transformers import AutoProcessor

    system = (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions."
    )
    prompt = f"{system} USER: <image>\nWhat is in the image? ASSISTANT:"
    sp = spm.SentencePieceProcessor(model_file=str(spm_model_file))
    before, after = prompt.split("<image>")
    expected = [1] + sp.encode(before) + [IMAGE_ID] * N_IMAGE + sp.encode(after)
    processor = AutoProcessor.from_pretrained(converted_original)
    image = Image.new("RGB", (500, 300), (200, 30, 40))
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == expected
    assert inputs["pixel_values"].shape == (1, 3, 336, 336)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}]
    assert processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False).endswith(
        "USER: <image>\nWhat is in the image? ASSISTANT:"
    )


# ----------------------------------------------------------------------------------------------------------
# llava-hf export: its chat template + LlavaProcessor's whole-string tokenization give the original ids
# ----------------------------------------------------------------------------------------------------------

SYSTEM_V1 = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


def _user(*parts: str | None) -> dict:
    """A user message; None stands for an image part."""
    return {
        "role": "user",
        "content": [{"type": "image"} if p is None else {"type": "text", "text": p} for p in parts],
    }


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


# (messages, add_generation_prompt, the prompt the original code built: docs/reference.md, "Prompts and labels")
LLAVA_HF_CASES = [
    ([_user(None, "What is in the image?")], True, f"{SYSTEM_V1} USER: <image>\nWhat is in the image? ASSISTANT:"),
    ([_user("Answer with 1 digit: 3 + 4?")], True, f"{SYSTEM_V1} USER: Answer with 1 digit: 3 + 4? ASSISTANT:"),
    (
        [
            _user("Décris l'image, s'il te plaît: 日本語 ✓ 🙂", None),
            _assistant("Ça va — 0.5 m² ☀, 12 boats"),
            _user("How many? Answer with 2 digits."),
            _assistant("42"),
            _user("And 1000 + 24?"),
        ],
        True,
        f"{SYSTEM_V1} USER: <image>\nDécris l'image, s'il te plaît: 日本語 ✓ 🙂 ASSISTANT: Ça va — 0.5 m² ☀, 12 "
        "boats</s>USER: How many? Answer with 2 digits. ASSISTANT: 42</s>USER: And 1000 + 24? ASSISTANT:",
    ),
    (
        [_user("Name 3 colours."), _assistant("red, green and blue"), _user("Another 1?")],
        True,
        f"{SYSTEM_V1} USER: Name 3 colours. ASSISTANT: red, green and blue</s>USER: Another 1? ASSISTANT:",
    ),
    (  # a training-style conversation ending on </s>, no generation prompt
        [_user(None, "What is in the image?"), _assistant("A dog.")],
        False,
        f"{SYSTEM_V1} USER: <image>\nWhat is in the image? ASSISTANT: A dog.</s>",
    ),
    (  # the generation prompt right after an answer's </s>
        [_user("Hi"), _assistant("Hello")],
        True,
        f"{SYSTEM_V1} USER: Hi ASSISTANT: Hello</s>ASSISTANT:",
    ),
    ([_user(None)], True, f"{SYSTEM_V1} USER: <image> ASSISTANT:"),  # an image and no text
    (
        [_user(None, None, "Compare the two images.")],
        True,
        f"{SYSTEM_V1} USER: <image>\n<image>\nCompare the two images. ASSISTANT:",
    ),
    (  # a custom system message; an empty one and one led by a space (no dummy prefix added by Metaspace)
        [{"role": "system", "content": "You describe images."}, _user("What is in the image? <image>")],
        True,
        "You describe images. USER: <image>\nWhat is in the image? ASSISTANT:",
    ),
    ([{"role": "system", "content": ""}, _user(None, "top left")], True, " USER: <image>\ntop left ASSISTANT:"),
    ([{"role": "system", "content": "  two"}, _user("x")], True, "  two USER: x ASSISTANT:"),
]


def legacy_llava_hf_source(llava_hf_dir: Path, folder: Path) -> Path:
    """llava_hf_dir with the tokenizer.json of older llava-hf repos (transformers < 4.41, see
    `legacy_tokenizer_spec`)."""
    shutil.copytree(llava_hf_dir, folder)
    spec = legacy_tokenizer_spec(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.convert_ids_to_tokens(tokenizer("a</s>USER").input_ids)[-1] == "▁USER"  # the legacy behaviour
    return folder


@pytest.fixture(scope="module", params=["released", "legacy-llava-hf"])
def llava_hf_export(request, tmp_path_factory) -> Path:
    """llava-hf exports of a released checkpoint (tokenizer.model with LLaMA-2's quirks, legacy false, see
    test_original_tokenization.py) and of a llava-hf one with a legacy tokenizer.json (the conftest
    SentencePiece model, legacy true)."""
    out = tmp_path_factory.mktemp("llava_hf_export") / "hf"
    if request.param == "released":
        from test_original_tokenization import write_released_llama_like

        llm_dir, vit_dir = write_released_llama_like(out.parent / "source")
        return convert_checkpoint(llm_dir, out, to="llava-hf", vision_tower=vit_dir)
    source = legacy_llava_hf_source(request.getfixturevalue("llava_hf_dir"), out.parent / "source")
    return convert_checkpoint(source, out, to="llava-hf")


@pytest.fixture
def original_ids(request, llava_hf_export, spm_model_file):
    """The original ids of a prompt for the export's source tokenizer (independent SentencePiece computation,
    tests/test_processing_sharegpt4v.py), with the image sentinel expanded to 576 <image> ids."""
    from test_original_tokenization import FIXTURE
    from test_processing_sharegpt4v import OriginalLlamaTokenizer, tokenizer_image_token

    released = request.node.callspec.params["llava_hf_export"] == "released"
    tokenizer = OriginalLlamaTokenizer(
        FIXTURE / "tokenizer.model" if released else spm_model_file, legacy=not released
    )
    image_id = json.loads((llava_hf_export / "config.json").read_text())["image_token_index"]

    def ids(prompt: str) -> list[int]:
        return [
            x
            for i in tokenizer_image_token(prompt, tokenizer)
            for x in ([image_id] * N_IMAGE if i == SENTINEL else [i])
        ]

    return ids


@pytest.mark.parametrize("messages, generation_prompt, prompt", LLAVA_HF_CASES)
def test_llava_hf_export_chat_template_gives_the_original_ids(
    llava_hf_export, original_ids, messages, generation_prompt, prompt
):
    from PIL import Image
    from tokenizers import Tokenizer

    processor = LlavaProcessor.from_pretrained(llava_hf_export)
    text = processor.apply_chat_template(messages, add_generation_prompt=generation_prompt)
    n_images = prompt.count("<image>")
    images = [Image.open(path).convert("RGB") for path in sorted(FIXTURE_IMAGES.glob("*.jpg"))[:n_images]]
    assert len(images) == n_images
    ids = processor(images=images or None, text=text)["input_ids"][0]
    expected = original_ids(prompt)
    assert ids == expected, (text, processor.tokenizer.convert_ids_to_tokens(ids)[-30:])
    assert ids.count(1) == 1  # one BOS: the tokenizer's
    # The same with the bare tokenizer.json (what vLLM / SGLang on any transformers version load) ...
    raw = Tokenizer.from_file(str(llava_hf_export / "tokenizer.json"))
    assert raw.encode(text.replace("<image>", "<image>" * N_IMAGE)).ids == expected
    # apply_chat_template(tokenize=True) adds BOS itself (the text does not start with one): the same ids.
    paths = iter(sorted(FIXTURE_IMAGES.glob("*.jpg")))
    with_paths = [
        m
        if isinstance(m["content"], str)
        else m | {"content": [c | {"path": str(next(paths))} if c["type"] == "image" else c for c in m["content"]]}
        for m in messages
    ]
    image_parts = sum(
        c["type"] == "image" for m in messages if not isinstance(m["content"], str) for c in m["content"]
    )
    if image_parts == n_images:  # (not with a literal "<image>" in the text: the images come from the parts)
        out = processor.apply_chat_template(
            with_paths, add_generation_prompt=generation_prompt, tokenize=True, return_dict=True
        )
        assert out["input_ids"][0] == expected
    # ... and the rendered text is the original prompt up to the spaces that stand for SentencePiece's
    # per-piece dummy prefix.
    assert text.replace("<image> ", "<image>").replace("</s> ", "</s>").removeprefix(" ") == prompt


def test_llava_hf_export_random_conversations_give_the_original_ids(llava_hf_export, original_ids):
    import random

    processor = LlavaProcessor.from_pretrained(llava_hf_export)
    rng = random.Random(0)
    words = ["a", "dog", "USER", ":", " ", "  ", "\n", "1", "23", "é", "日本", "🙂", "?", "ASSISTANT", ".", "\t"]

    def text() -> str:
        return "".join(rng.choice(words) for _ in range(rng.randint(0, 8)))

    for _ in range(150):
        messages, turns = [], []
        system = SYSTEM_V1
        if rng.random() < 0.3:
            system = text()
            messages.append({"role": "system", "content": system})
        for turn in range(rng.randint(1, 3)):
            question, answer = text(), text()
            image = turn == 0 and rng.random() < 0.5
            messages.append(_user(*([None] if image else []), question))
            turns.append(("<image>\n" + question.strip()).strip() if image else question)
            messages.append(_assistant(answer))
            turns.append(answer)
        generation_prompt = rng.random() < 0.5
        if generation_prompt:
            messages, turns = messages[:-1], turns[:-1]
        prompt = (
            system + " " + "".join(f"USER: {t} " if i % 2 == 0 else f"ASSISTANT: {t}</s>" for i, t in enumerate(turns))
        )
        prompt += "ASSISTANT:" if generation_prompt else ""
        rendered = processor.apply_chat_template(messages, add_generation_prompt=generation_prompt)
        ids = processor.tokenizer(rendered.replace("<image>", "<image>" * N_IMAGE))["input_ids"]
        assert ids == original_ids(prompt), (messages, rendered)


def test_whole_string_template_check_names_the_first_difference(llava_hf_export, tiny_config):
    """The export-time self-check (a warning in convert_checkpoint) accepts the export's template and catches
    the plugin's vicuna_v1 (BOS in the text: a second BOS) and the template of the other `legacy` setting (what
    follows </s>)."""
    from transformers_sharegpt4v.conversion import check_whole_string_template

    processor = LlavaProcessor.from_pretrained(llava_hf_export)
    tokenizer, template = processor.tokenizer, processor.chat_template
    config = ShareGPT4VConfig(**tiny_config_kwargs(len(tokenizer), processor.image_token_id))
    assert check_whole_string_template(config, tokenizer, template) is None
    folder = REPO / "transformers_sharegpt4v" / "chat_templates"
    problem = check_whole_string_template(config, tokenizer, (folder / "vicuna_v1.jinja").read_text())
    assert problem is not None and "position 1" in problem and "'<s>'" in problem
    lines = ("{%- set legacy = true -%}", "{%- set legacy = false -%}")
    other = template.replace(*lines) if lines[0] in template else template.replace(*reversed(lines))
    assert other != template
    problem = check_whole_string_template(config, tokenizer, other)
    assert problem is not None and "</s>" in problem


def test_llava_hf_export_model_card_example_runs(llava_hf_export):
    """The model card's Python example (apply_chat_template -> LlavaProcessor -> generate) runs on the export."""
    card = (llava_hf_export / "README.md").read_text(encoding="utf-8")
    assert "vicuna_v1_llava_hf" in card and '"add_special_tokens": true' in card
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    image = sorted(FIXTURE_IMAGES.glob("*.jpg"))[0]
    code = code.replace('"photo.jpg"', repr(str(image))).replace("max_new_tokens=512", "max_new_tokens=2")
    code = code.replace('"<your-namespace>/hf"', repr(str(llava_hf_export)))  # the card's repo id placeholder
    assert "<your-namespace>" not in code
    assert str(image) in code and "max_new_tokens=2" in code
    namespace: dict = {}
    with torch.no_grad():
        exec(compile(code, "model-card-example", "exec"), namespace)  # noqa: S102 - our own card's example
    assert namespace["output"].shape[1] == namespace["inputs"]["input_ids"].shape[1] + 2
