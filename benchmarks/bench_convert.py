"""Peak memory of `sharegpt4v convert` on a released-layout checkpoint vs loading the whole state dict.

Writes a synthetic checkpoint of several hundred MB in exactly the released ShareGPT4V layout (share4v
config, two pickled fp16 LLM shards + index, a separate fp32 CLIP vision tower folder), then measures, each
in a fresh subprocess, the peak resident memory (VmHWM, which counts memory-mapped pages too) of:

- baseline: the imports and the tokenizer, no weights touched;
- plugin: `convert_checkpoint` (streams one source shard at a time, writes each tensor as it is computed);
- peer: the usual script approach (transformers' llava conversion scripts and most hand-written converters):
  `torch.load` every shard into one state dict, rename, cast, then `huggingface_hub.save_torch_state_dict`.

Prints peak RSS above the baseline for both, against the checkpoint size, the largest source shard and the
largest tensor, and the ratio plugin / peer. Both outputs are checked to hold identical tensors.

    OMP_NUM_THREADS=1 python benchmarks/bench_convert.py [--hidden 2048] [--layers 4] [--workdir DIR]
"""

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

from transformers_sharegpt4v.testing_utils import train_llama_sentencepiece


def write_checkpoint(root: Path, hidden: int, layers: int, vit_hidden: int, vit_layers: int) -> tuple[Path, Path]:
    llm, vit = root / "ShareGPT4V-synthetic", root / "ShareGPT4V-synthetic_vit"
    llm.mkdir(parents=True)
    vit.mkdir(parents=True)
    train_llama_sentencepiece(llm / "tokenizer.model")
    (llm / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "legacy": False, "pad_token": None})
    )
    vocab, inter = 700, int(2.6875 * hidden)
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int, dtype=torch.float16) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.02).to(dtype)

    shards = _llm_shards(rand, vocab, hidden, inter, layers, vit_hidden)
    _write_llm(llm, shards, vit, vocab, hidden, inter, layers, vit_hidden)
    _write_vision_tower(vit, rand, vit_hidden, vit_layers)
    return llm, vit


def _llm_shards(rand, vocab: int, hidden: int, inter: int, layers: int, vit_hidden: int) -> dict[str, dict]:
    """The LLM's tensors in the released layout (LLaMA keys, mm_projector), grouped into two shards."""
    shards: dict[str, dict[str, torch.Tensor]] = {}
    first = {"model.embed_tokens.weight": rand(vocab, hidden)}
    per_shard = max(1, layers // 2)
    for i in range(layers):
        p = f"model.layers.{i}."
        block = {p + f"self_attn.{n}_proj.weight": rand(hidden, hidden) for n in "qkvo"}
        block.update({p + f"mlp.{n}_proj.weight": rand(inter, hidden) for n in ("gate", "up")})
        block[p + "mlp.down_proj.weight"] = rand(hidden, inter)
        block[p + "input_layernorm.weight"] = torch.ones(hidden, dtype=torch.float16)
        block[p + "post_attention_layernorm.weight"] = torch.ones(hidden, dtype=torch.float16)
        block[p + "self_attn.rotary_emb.inv_freq"] = torch.ones(hidden // 64)
        shards.setdefault(f"shard{i // per_shard}", first if i == 0 else {}).update(block)
    last = shards[f"shard{(layers - 1) // per_shard}"]
    last.update(
        {
            "model.norm.weight": torch.ones(hidden, dtype=torch.float16),
            "lm_head.weight": rand(vocab, hidden),
            "model.mm_projector.0.weight": rand(hidden, vit_hidden),
            "model.mm_projector.0.bias": rand(hidden),
            "model.mm_projector.2.weight": rand(hidden, hidden),
            "model.mm_projector.2.bias": rand(hidden),
        }
    )
    return shards


def _write_llm(
    llm: Path, shards: dict, vit: Path, vocab: int, hidden: int, inter: int, layers: int, vit_hidden: int
) -> None:
    """The LLM shards, their index and the share4v config.json, as the released checkpoints have them."""
    names = {key: f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin" for i, key in enumerate(shards)}
    weight_map = {}
    for key, state in shards.items():
        torch.save(state, llm / names[key])
        weight_map.update({k: names[key] for k in state})
    (llm / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = dict(
        architectures=["Share4VLlamaForCausalLM"], model_type="share4v", hidden_size=hidden, intermediate_size=inter,
        num_hidden_layers=layers, num_attention_heads=hidden // 128, num_key_value_heads=hidden // 128,
        vocab_size=vocab, max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
        pad_token_id=0, torch_dtype="float16", mm_vision_tower=str(vit), mm_hidden_size=vit_hidden,
        mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_projector_type="mlp2x_gelu",
        image_aspect_ratio="pad", mm_use_im_start_end=False, mm_use_im_patch_token=False,
    )  # fmt: skip
    (llm / "config.json").write_text(json.dumps(config))


def _write_vision_tower(vit: Path, rand, vit_hidden: int, vit_layers: int) -> None:
    """A CLIP ViT-L/14-336-shaped vision tower folder (config and fp32 weights), at `vit_hidden` wide."""
    from transformers import CLIPVisionConfig

    vit_config = CLIPVisionConfig(
        hidden_size=vit_hidden, intermediate_size=4 * vit_hidden, num_hidden_layers=vit_layers,
        num_attention_heads=vit_hidden // 64, image_size=336, patch_size=14, projection_dim=768,
    )  # fmt: skip
    (vit / "config.json").write_text(json.dumps(dict(vit_config.to_dict(), architectures=["CLIPVisionModel"])))
    from transformers import CLIPVisionModel

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in CLIPVisionModel(vit_config).state_dict().items()}
    torch.save(
        {"vision_model." + k: rand(*s, dtype=torch.float32) for k, s in shapes.items()}, vit / "pytorch_model.bin"
    )


PLUGIN = """
from transformers_sharegpt4v.conversion import convert_checkpoint
convert_checkpoint(SRC, OUT, max_shard_size="2GB")
"""

PEER = """
import torch
from huggingface_hub import save_torch_state_dict
from transformers_sharegpt4v.conversion import list_weight_files, rename_original_llm_key, rename_vision_tower_key
from transformers_sharegpt4v.conversion import convert_checkpoint, _plan_original, read_config
from pathlib import Path
state = {}
for folder, rename in ((Path(SRC), rename_original_llm_key), (Path(VIT), rename_vision_tower_key)):
    for name in list_weight_files(folder):
        for key, value in torch.load(folder / name, map_location="cpu", weights_only=True).items():
            target = rename(key)
            if target is not None:
                state[target] = value
plan = _plan_original(Path(SRC), read_config(Path(SRC)), None)
rows = plan.new_vocab_rows
for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
    state[key] = torch.cat([state[key], state[key].float().mean(0, keepdim=True).to(state[key].dtype).expand(rows, -1)])
state = {k: v.to(torch.float16) for k, v in state.items()}
Path(OUT).mkdir()
save_torch_state_dict(state, OUT, max_shard_size="2GB")
"""

BASELINE = """
import transformers_sharegpt4v.conversion as c
from pathlib import Path
plan = c._plan_original(Path(SRC), c.read_config(Path(SRC)), None)
c.expected_weights(plan.config)
"""


def peak_rss_mb(code: str, **names: str) -> float:
    prelude = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    # VmHWM: this process's peak RSS. (ru_maxrss would carry over the parent's peak across fork + exec.)
    report = "\nprint('MAXRSS', [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code) + report], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    line = [x for x in result.stdout.splitlines() if x.startswith("MAXRSS")][-1]
    return int(line.split()[1]) / 1024  # Linux reports KiB


def tensors_of(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for path in folder.glob("*.safetensors"):
        out.update(load_file(path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vit-hidden", type=int, default=1024)
    parser.add_argument("--vit-layers", type=int, default=6)
    parser.add_argument(
        "--workdir", default=None, help="where to write the synthetic checkpoint (default: a temp dir)"
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-convert-", dir=args.workdir))
    try:
        llm, vit = write_checkpoint(root, args.hidden, args.layers, args.vit_hidden, args.vit_layers)
        files = sorted(llm.glob("*.bin")) + [vit / "pytorch_model.bin"]
        size = sum(f.stat().st_size for f in files) / 2**20
        largest_file = max(f.stat().st_size for f in files) / 2**20
        inter = int(2.6875 * args.hidden)
        largest_tensor = max(inter * args.hidden * 2, 4 * args.vit_hidden**2 * 4) / 2**20
        print(
            f"checkpoint: {size:.0f} MB in {len(files)} files (largest file {largest_file:.0f} MB, largest tensor "
            f"{largest_tensor:.0f} MB); LLM fp16, vision tower fp32 -> fp16"
        )
        base = peak_rss_mb(BASELINE, SRC=str(llm))
        plugin = peak_rss_mb(PLUGIN, SRC=str(llm), OUT=str(root / "plugin")) - base
        peer = peak_rss_mb(PEER, SRC=str(llm), VIT=str(vit), OUT=str(root / "peer")) - base
        ours, theirs = tensors_of(root / "plugin"), tensors_of(root / "peer")
        same = set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
        print(f"baseline (imports, tokenizer, no weights): {base:.0f} MB peak RSS")
        print(
            f"plugin convert_checkpoint (streaming): {plugin:.0f} MB above baseline = {plugin / size:.2f} x checkpoint, "
            f"{plugin / (largest_file + largest_tensor):.2f} x (largest file + largest tensor)"
        )
        print(
            f"peer (load whole state dict, then save): {peer:.0f} MB above baseline = {peer / size:.2f} x checkpoint"
        )
        print(f"ratio plugin/peer peak memory: {plugin / peer:.3f}; identical output tensors: {same}")
        if not same or not math.isfinite(plugin):
            raise SystemExit("outputs differ")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
