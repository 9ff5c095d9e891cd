"""`sharegpt4v push` and `model.push_to_hub` against a local Hub-compatible server (tests/hub_server.py), with
the real `huggingface_hub` client in a subprocess; then the repo is downloaded back and loaded with
`trust_remote_code=True` where the plugin cannot be imported."""

import json
import shutil

import pytest
import torch
from hub_server import LocalHub, run_with_hub
from no_plugin import blocker_dir, script
from test_conversion import (
    IMAGE_ID,
    SENTINEL,
    all_tensors,
    expand,
    pixels,
    write_released_checkpoint,
)

from transformers_sharegpt4v import ShareGPT4VForCausalLM
from transformers_sharegpt4v.conversion import convert_checkpoint
from transformers_sharegpt4v.hub import push_checkpoint, remote_code_files

CODE_FILES = {
    "configuration_sharegpt4v.py",
    "modeling_sharegpt4v.py",
    "image_processing_sharegpt4v.py",
    "tokenization_sharegpt4v.py",
    "processing_sharegpt4v.py",
}


@pytest.fixture(scope="module")
def checkpoint(spm_model_file, tmp_path_factory):
    """A plugin checkpoint converted from a tiny released-layout ShareGPT4V checkpoint, and expected logits."""
    root = tmp_path_factory.mktemp("push")
    llm_dir, _ = write_released_checkpoint(root, spm_model_file)
    folder = convert_checkpoint(llm_dir, root / "converted" / "ShareGPT4V-tiny")
    ids, pv = torch.tensor([expand([1, 45, SENTINEL, 13, 14])]), pixels()
    with torch.no_grad():
        expected = ShareGPT4VForCausalLM.from_pretrained(folder).eval()(input_ids=ids, pixel_values=pv).logits
    torch.save({"ids": ids, "pv": pv, "expected": expected}, root / "inputs.pt")
    return folder, root / "inputs.pt"


def load_back_without_plugin(hub: LocalHub, repo_id: str, inputs, cwd) -> None:
    code = script(
        "import torch\n"
        "from transformers import AutoModelForCausalLM, AutoProcessor\n"
        f"model = AutoModelForCausalLM.from_pretrained({repo_id!r}, trust_remote_code=True).eval()\n"
        "assert type(model).__name__ == 'ShareGPT4VForCausalLM', type(model)\n"
        f"data = torch.load({str(inputs)!r})\n"
        "with torch.no_grad():\n"
        "    logits = model(input_ids=data['ids'], pixel_values=data['pv']).logits\n"
        "assert (logits - data['expected']).abs().max() < 1e-5\n"
        f"processor = AutoProcessor.from_pretrained({repo_id!r}, trust_remote_code=True)\n"
        "assert type(processor).__name__ == 'ShareGPT4VProcessor' and processor.image_processor.do_pad\n"
        f"assert processor.tokenizer.convert_tokens_to_ids('<image>') == {IMAGE_ID}\n"
    )
    run_with_hub(hub, code, cwd=cwd, env={"PYTHONPATH": str(blocker_dir(cwd)), "OMP_NUM_THREADS": "1"})


def test_cli_push_uploads_everything_and_loads_back_without_plugin(checkpoint, tmp_path):
    folder, inputs = checkpoint
    with LocalHub(tmp_path / "hub", lfs=True) as hub:
        result = run_with_hub(hub, ["sharegpt4v", "push", str(folder), "test-user/ShareGPT4V-tiny"], cwd=tmp_path)
        assert "Pushed" in result.stdout
        files = set(hub.list_files("test-user/ShareGPT4V-tiny"))
        local = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert local <= files and "additional_chat_templates/plain.jinja" in files
        assert (
            CODE_FILES | {"config.json", "README.md", "generation_config.json", "model.safetensors.index.json"}
            <= files
        )
        assert {"processor_config.json", "tokenizer.json", "tokenizer_config.json"} <= files
        shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
        assert shards and set(shards) <= files
        for shard in shards:
            assert hub.is_lfs("test-user/ShareGPT4V-tiny", shard)
            assert hub.read_file("test-user/ShareGPT4V-tiny", shard) == (folder / shard).read_bytes()
        card = hub.read_file("test-user/ShareGPT4V-tiny", "README.md").decode()
        assert "trust_remote_code=True" in card and "license:" in card and "Provenance" in card
        assert not hub.stray_requests
        load_back_without_plugin(hub, "test-user/ShareGPT4V-tiny", inputs, tmp_path)
        # A later model.push_to_hub (e.g. after more training) keeps the card: transformers reuses the repo's.
        run_with_hub(
            hub,
            "import transformers_sharegpt4v\n"
            "from transformers_sharegpt4v import ShareGPT4VForCausalLM\n"
            f"ShareGPT4VForCausalLM.from_pretrained({str(folder)!r}).push_to_hub('test-user/ShareGPT4V-tiny')\n",
            cwd=tmp_path,
        )
        assert hub.read_file("test-user/ShareGPT4V-tiny", "README.md").decode().startswith(card.split("\n# ")[0])
        assert "trust_remote_code=True" in hub.read_file("test-user/ShareGPT4V-tiny", "README.md").decode()


def test_model_and_processor_push_to_hub_carry_code_and_load_back(checkpoint, tmp_path):
    folder, inputs = checkpoint
    with LocalHub(tmp_path / "hub") as hub:
        run_with_hub(
            hub,
            "import transformers_sharegpt4v\n"
            "from transformers import AutoProcessor\n"
            "from transformers_sharegpt4v import ShareGPT4VForCausalLM\n"
            f"model = ShareGPT4VForCausalLM.from_pretrained({str(folder)!r})\n"
            "model.push_to_hub('test-user/pushed')\n"
            f"AutoProcessor.from_pretrained({str(folder)!r}).push_to_hub('test-user/pushed')\n",
            cwd=tmp_path,
        )
        files = set(hub.list_files("test-user/pushed"))
        assert CODE_FILES <= files and "config.json" in files and "processor_config.json" in files
        assert any(name.endswith(".safetensors") for name in files)
        # transformers writes its generic card on a fresh repo (see the CLI test for keeping ours)
        assert "README.md" in files
        config = json.loads(hub.read_file("test-user/pushed", "config.json"))
        assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_sharegpt4v.ShareGPT4VForCausalLM"
        load_back_without_plugin(hub, "test-user/pushed", inputs, tmp_path)


def test_cli_push_to_a_new_branch_creates_it_and_leaves_main_alone(checkpoint, tmp_path):
    folder, _ = checkpoint
    repo = "test-user/ShareGPT4V-branch"
    with LocalHub(tmp_path / "hub") as hub:
        run_with_hub(hub, f"from huggingface_hub import HfApi\nHfApi().create_repo({repo!r})\n", cwd=tmp_path)
        main_files, main_sha = hub.list_files(repo), hub.repo_sha(repo)
        result = run_with_hub(hub, ["sharegpt4v", "push", str(folder), repo, "--revision", "stage-2"], cwd=tmp_path)
        assert "Pushed" in result.stdout
        assert "config.json" in hub.list_files(repo, revision="stage-2")
        assert hub.list_files(repo) == main_files and hub.repo_sha(repo) == main_sha
        # The branch starts at main: main's commit is the parent of the pushed one.
        assert [c["id"] for c in hub.commits(repo, revision="stage-2")][1:] == [c["id"] for c in hub.commits(repo)]
        # Pushing again to the now existing branch works too (exist_ok), and to a fresh repo's new branch.
        (folder / "extra.txt").write_text("more\n")
        try:
            run_with_hub(hub, ["sharegpt4v", "push", str(folder), repo, "--revision", "stage-2"], cwd=tmp_path)
        finally:
            (folder / "extra.txt").unlink()
        assert "extra.txt" in hub.list_files(repo, revision="stage-2") and "extra.txt" not in hub.list_files(repo)
        run_with_hub(hub, ["sharegpt4v", "push", str(folder), "test-user/fresh", "--revision", "dev"], cwd=tmp_path)
        assert "config.json" in hub.list_files("test-user/fresh", revision="dev")
        assert "config.json" not in hub.list_files("test-user/fresh")


def test_cli_push_errors_go_to_stderr(tmp_path):
    with LocalHub(tmp_path / "hub") as hub:
        result = run_with_hub(hub, ["sharegpt4v", "push", str(tmp_path), "test-user/x"], cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "sharegpt4v push: error:" in result.stderr and "no config.json" in result.stderr
    assert result.stdout == ""


def test_push_refuses_incomplete_folders(checkpoint, tmp_path):
    folder, _ = checkpoint
    with pytest.raises(ValueError, match="no config.json"):
        push_checkpoint(tmp_path, "test-user/x")
    assert set(remote_code_files(folder)) == CODE_FILES  # what the checkpoint's auto_map entries need
    for name in sorted(CODE_FILES):  # the processor's files too: named by processor_config.json's auto_maps
        broken = tmp_path / f"without-{name}"
        shutil.copytree(folder, broken)
        (broken / name).unlink()
        with pytest.raises(ValueError, match=f"lacks {name} "):
            push_checkpoint(broken, "test-user/x")


def test_convert_resolves_hub_ids_for_the_checkpoint_and_its_vision_tower(spm_model_file, tmp_path):
    """SRC and mm_vision_tower given as Hub ids are downloaded with huggingface_hub; the tower repo holds both
    pickles and safetensors (like openai/clip-vit-large-patch14-336) and only the safetensors are fetched."""
    from safetensors.torch import save_file

    llm_dir, vit_dir = write_released_checkpoint(tmp_path / "src", spm_model_file)
    tower = torch.load(vit_dir / "pytorch_model.bin", weights_only=True)
    save_file({k: v.contiguous() for k, v in tower.items()}, vit_dir / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((llm_dir / "config.json").read_text())
    config["mm_vision_tower"] = "test-user/ShareGPT4V-tiny_vit"
    (llm_dir / "config.json").write_text(json.dumps(config))
    (llm_dir / "README.md").write_text("---\nlicense: llama2\n---\n# ShareGPT4V tiny\n")
    local = convert_checkpoint(llm_dir, tmp_path / "local", vision_tower=vit_dir)

    with LocalHub(tmp_path / "hub") as hub:
        run_with_hub(
            hub,
            "from huggingface_hub import HfApi\n"
            "api = HfApi()\n"
            f"for repo, folder in (('test-user/ShareGPT4V-tiny', {str(llm_dir)!r}), "
            f"('test-user/ShareGPT4V-tiny_vit', {str(vit_dir)!r})):\n"
            "    api.create_repo(repo)\n"
            "    api.upload_folder(repo_id=repo, folder_path=folder)\n",
            cwd=tmp_path,
        )
        started = len(hub.requests)
        run_with_hub(hub, ["sharegpt4v", "convert", "test-user/ShareGPT4V-tiny", str(tmp_path / "out")], cwd=tmp_path)
        fetched = [path for _, path, _ in hub.requests[started:] if "/resolve/" in path]
        assert any("ShareGPT4V-tiny_vit/resolve/" in p and p.endswith("/model.safetensors") for p in fetched), fetched
        assert not any("_vit/resolve/" in p and p.endswith(".bin") for p in fetched), fetched
        assert not hub.stray_requests
    out = tmp_path / "out"
    expected, got = all_tensors(local), all_tensors(out)
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in expected)
    card = (out / "README.md").read_text()
    assert "license: llama2" in card and "base_model: test-user/ShareGPT4V-tiny" in card
