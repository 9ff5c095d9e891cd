"""Tests of the local Hub-compatible server (tests/hub_server.py) against the unmodified huggingface_hub,
datasets and transformers clients, each run in a subprocess whose environment points them at the server."""

import http.client
import json
import random
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hub_server import DEFAULT_TOKEN, HubSubprocessError, LocalHub, hub_env, local_hub, run_with_hub

BIG_SIZE = 11 * 1024 * 1024  # over the Hub's 10 MiB limit for regular (non-LFS) files


def _write_model_folder(folder: Path) -> dict[str, bytes]:
    rng = random.Random(1234)
    files = {
        "README.txt": b"a tiny test model\n",
        "sub/config.json": json.dumps({"hidden_size": 32, "name": "tiny"}).encode(),
        "model.safetensors": rng.randbytes(BIG_SIZE),
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return files


def _request(hub: LocalHub, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One raw HTTP request to the hub (no HF client): returns (status, headers, body)."""
    req = urllib.request.Request(hub.endpoint + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _commit_inline(hub: LocalHub, repo_id: str, files: dict[str, bytes], summary: str = "add files") -> str:
    """Commit files through the HTTP commit endpoint with an ndjson payload built here, return the commit sha."""
    import base64

    lines = [{"key": "header", "value": {"summary": summary, "description": ""}}]
    for path, data in files.items():
        content = base64.b64encode(data).decode()
        lines.append({"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}})
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    headers = {"Authorization": f"Bearer {hub.token}", "Content-Type": "application/x-ndjson"}
    status, _, raw = _request(hub, "POST", f"/api/models/{repo_id}/commit/main", body, headers)
    assert status == 200, raw
    return json.loads(raw)["commitOid"]


@pytest.mark.parametrize("lfs", [True, False], ids=["lfs", "regular"])
def test_upload_folder_snapshot_download_and_revisions(tmp_path, lfs):
    folder = tmp_path / "folder"
    expected = _write_model_folder(folder)
    with LocalHub(tmp_path / "hub", lfs=lfs) as hub:
        code = textwrap.dedent(
            """
            import json, os
            from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
            api = HfApi()
            assert api.whoami()["name"] == "test-user"
            url = api.create_repo("tiny")
            assert url.repo_id == "test-user/tiny", url
            assert api.create_repo("tiny", exist_ok=True).repo_id == "test-user/tiny"
            first = api.upload_folder(repo_id="test-user/tiny", folder_path="folder").oid
            snapshot = snapshot_download("test-user/tiny")
            second = api.upload_file(path_or_fileobj=b"changed\\n", path_in_repo="README.txt", repo_id="test-user/tiny").oid
            with HfFileSystem().open("test-user/tiny/model.safetensors", "rb", block_size=4096) as f:
                f.seek(5_000_000)
                middle = f.read(64)
            api.create_branch("test-user/tiny", branch="dev")
            api.delete_file("README.txt", "test-user/tiny", revision="dev")
            api.create_tag("test-user/tiny", tag="v1", revision=first)
            print(json.dumps({
                "first": first,
                "second": second,
                "snapshot": snapshot,
                "old_readme": open(hf_hub_download("test-user/tiny", "README.txt", revision=first), "rb").read().decode(),
                "new_readme": open(hf_hub_download("test-user/tiny", "README.txt"), "rb").read().decode(),
                "files": sorted(api.list_repo_files("test-user/tiny")),
                "tree": sorted(e.path for e in api.list_repo_tree("test-user/tiny", recursive=True)),
                "middle": middle.hex(),
                "commits": [c.title for c in api.list_repo_commits("test-user/tiny")],
                "dev_files": sorted(api.list_repo_files("test-user/tiny", revision="dev")),
                "v1_readme": open(hf_hub_download("test-user/tiny", "README.txt", revision="v1"), "rb").read().decode(),
                "refs": sorted(r.name for r in api.list_repo_refs("test-user/tiny").branches),
            }))
            """
        )
        result = run_with_hub(hub, code, cwd=tmp_path)
        out = json.loads(result.stdout.strip().splitlines()[-1])

        snapshot = Path(out["snapshot"])
        for rel, data in expected.items():
            assert (snapshot / rel).read_bytes() == data, rel
        assert out["old_readme"] == "a tiny test model\n"
        assert out["new_readme"] == "changed\n"
        assert out["files"] == [".gitattributes", "README.txt", "model.safetensors", "sub/config.json"]
        assert out["tree"] == [".gitattributes", "README.txt", "model.safetensors", "sub", "sub/config.json"]
        assert out["dev_files"] == [".gitattributes", "model.safetensors", "sub/config.json"]
        assert out["v1_readme"] == "a tiny test model\n"
        assert out["refs"] == ["dev", "main"]
        assert bytes.fromhex(out["middle"]) == expected["model.safetensors"][5_000_000:5_000_064]
        assert out["commits"] == [
            "Upload README.txt with huggingface_hub",
            "Upload folder using huggingface_hub",
            "initial commit",
        ]

        # The server's own view agrees with what the client sent.
        assert hub.repo_sha("test-user/tiny") == out["second"]
        assert hub.read_file("test-user/tiny", "model.safetensors") == expected["model.safetensors"]
        assert hub.read_file("test-user/tiny", "README.txt", revision=out["first"]) == expected["README.txt"]
        assert hub.is_lfs("test-user/tiny", "model.safetensors") is lfs
        assert hub.is_lfs("test-user/tiny", "sub/config.json") is False
        used_lfs_api = any(path.endswith(".git/info/lfs/objects/batch") for _, path, _ in hub.requests)
        assert used_lfs_api is lfs
        assert any(status == 206 for _, _, status in hub.requests)  # HfFileSystem read a byte range
        assert hub.stray_requests == []


def test_dataset_parquet_upload_and_push_to_hub_read_back_with_load_dataset(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": i, "caption": f"caption number {i}", "score": i / 4} for i in range(7)]
    data_dir = tmp_path / "ds" / "data"
    data_dir.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:4]), data_dir / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[4:]), data_dir / "train-00001-of-00002.parquet")
    pushed = {"image": ["a.jpg", "b.jpg", "c.jpg"], "caption": ["one", "two", "three"]}

    with LocalHub(tmp_path / "hub") as hub:
        code = textwrap.dedent(
            f"""
            import json
            import datasets
            from huggingface_hub import HfApi
            api = HfApi()
            api.create_repo("test-user/captions", repo_type="dataset")
            api.upload_folder(repo_id="test-user/captions", repo_type="dataset", folder_path="ds")
            loaded = datasets.load_dataset("test-user/captions", split="train")
            datasets.Dataset.from_dict({pushed!r}).push_to_hub("test-user/pushed")
            reloaded = datasets.load_dataset("test-user/pushed", split="train")
            print(json.dumps({{"loaded": loaded.to_list(), "pushed": reloaded.to_dict()}}))
            """
        )
        result = run_with_hub(hub, code, cwd=tmp_path)
        out = json.loads(result.stdout.strip().splitlines()[-1])

        assert sorted(out["loaded"], key=lambda r: r["id"]) == rows
        assert out["pushed"] == pushed
        files = hub.list_files("test-user/pushed", repo_type="dataset")
        assert "README.md" in files and any(f.startswith("data/train-") and f.endswith(".parquet") for f in files)
        assert (
            hub.read_file("test-user/captions", "data/train-00001-of-00002.parquet", repo_type="dataset")
            == (data_dir / "train-00001-of-00002.parquet").read_bytes()
        )
        # datasets asks the dataset viewer (datasets-server.<endpoint host>) for exported infos: blocked locally.
        assert all("datasets-server." in url for _, url in hub.stray_requests), hub.stray_requests


REMOTE_CONFIG = """from transformers import PretrainedConfig

from .helper_foo import DEFAULT_WIDTH


class FooConfig(PretrainedConfig):
    model_type = "foo"

    def __init__(self, width=DEFAULT_WIDTH, **kwargs):
        self.width = width
        super().__init__(**kwargs)
"""


def test_transformers_push_to_hub_from_pretrained_and_remote_code(tmp_path):
    from safetensors.torch import load_file

    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "configuration_foo.py").write_text(REMOTE_CONFIG)
    (remote / "helper_foo.py").write_text("DEFAULT_WIDTH = 7\n")
    config = {"model_type": "foo", "height": 11, "auto_map": {"AutoConfig": "configuration_foo.FooConfig"}}
    (remote / "config.json").write_text(json.dumps(config))

    with LocalHub(tmp_path / "hub") as hub:
        code = textwrap.dedent(
            """
            import torch
            from transformers import LlamaConfig, LlamaForCausalLM
            torch.manual_seed(0)
            config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)
            model = LlamaForCausalLM(config)
            model.save_pretrained("reference")
            model.push_to_hub("tiny-llama")
            LlamaForCausalLM.from_pretrained("test-user/tiny-llama").save_pretrained("reloaded")

            # Code shipped in the repo, loaded with trust_remote_code (relative imports included).
            from huggingface_hub import HfApi
            from transformers import AutoConfig
            HfApi().create_repo("remote-code")
            HfApi().upload_folder(repo_id="test-user/remote-code", folder_path="remote")
            remote = AutoConfig.from_pretrained("test-user/remote-code", trust_remote_code=True)
            print("REMOTE", type(remote).__name__, remote.width, remote.height)
            """
        )
        result = run_with_hub(hub, code, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
        assert "REMOTE FooConfig 7 11" in result.stdout.splitlines()

        reference = load_file(tmp_path / "reference" / "model.safetensors")
        reloaded = load_file(tmp_path / "reloaded" / "model.safetensors")
        assert reference.keys() == reloaded.keys() and len(reference) > 5
        for key, tensor in reference.items():
            assert tensor.equal(reloaded[key]), key
        assert (
            hub.read_file("test-user/tiny-llama", "config.json")
            == (tmp_path / "reference" / "config.json").read_bytes()
        )
        assert "README.md" in hub.list_files("test-user/tiny-llama")
        assert hub.is_lfs("test-user/tiny-llama", "model.safetensors")
        assert hub.stray_requests == []


def test_http_errors_ranges_and_auth(tmp_path):
    with LocalHub(tmp_path / "hub") as hub:
        hub.create_repo("org/repo")
        data = bytes(range(256)) * 40  # 10240 bytes
        sha = _commit_inline(hub, "org/repo", {"dir/blob.bin": data, "a.txt": b"hello"})
        assert hub.repo_sha("org/repo") == sha and len(sha) == 40

        status, headers, body = _request(hub, "GET", "/org/repo/resolve/main/dir/blob.bin")
        assert (status, body) == (200, data)
        assert headers["X-Repo-Commit"] == sha and headers["Content-Length"] == str(len(data))
        import hashlib

        assert headers["ETag"] == '"' + hashlib.sha1(b"blob 10240\0" + data).hexdigest() + '"'  # git blob oid

        status, headers, body = _request(
            hub, "GET", "/org/repo/resolve/main/dir/blob.bin", headers={"Range": "bytes=100-199"}
        )
        assert (status, body, headers["Content-Range"]) == (206, data[100:200], "bytes 100-199/10240")
        status, _, body = _request(hub, "GET", "/org/repo/resolve/main/dir/blob.bin", headers={"Range": "bytes=-10"})
        assert (status, body) == (206, data[-10:])
        status, _, body = _request(
            hub, "GET", "/org/repo/resolve/main/dir/blob.bin", headers={"Range": "bytes=10000-"}
        )
        assert (status, body) == (206, data[10000:])
        status, headers, _ = _request(hub, "GET", "/org/repo/resolve/main/a.txt", headers={"Range": "bytes=5-"})
        assert (status, headers["Content-Range"]) == (416, "bytes */5")

        status, headers, _ = _request(hub, "HEAD", "/org/repo/resolve/main/missing.txt")
        assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (404, "EntryNotFound", sha)
        status, headers, _ = _request(hub, "HEAD", "/org/repo/resolve/nope/a.txt")
        assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
        status, headers, _ = _request(hub, "GET", "/api/models/org/other")
        assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
        status, headers, _ = _request(hub, "GET", "/api/datasets/org/repo")  # a model, not a dataset
        assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")

        status, _, body = _request(hub, "GET", "/api/models/org/repo/tree/main/dir")
        assert status == 200 and [e["path"] for e in json.loads(body)] == ["dir/blob.bin"]
        status, _, body = _request(hub, "GET", f"/api/models/org/repo/revision/{sha}")
        assert status == 200 and json.loads(body)["sha"] == sha

        # Writes need the token; reads do not.
        create = json.dumps({"name": "new", "organization": "org", "type": "model"}).encode()
        assert _request(hub, "POST", "/api/repos/create", create, {"Content-Type": "application/json"})[0] == 401
        assert _request(hub, "GET", "/api/whoami-v2", headers={"Authorization": "Bearer wrong"})[0] == 401
        status, _, body = _request(hub, "GET", "/api/whoami-v2", headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
        assert status == 200 and json.loads(body)["name"] == "test-user"

        # An early error (no token) on a keep-alive connection consumes the request body: the next request works.
        conn = http.client.HTTPConnection("127.0.0.1", int(hub.endpoint.rsplit(":", 1)[1]), timeout=10)
        conn.request("POST", "/api/models/org/repo/commit/main", body=b"x" * 5000)
        response = conn.getresponse()
        assert (response.status, response.read() != b"") == (401, True)
        conn.request("GET", "/org/repo/resolve/main/a.txt")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"hello")
        conn.close()

        # A request for another host (this server used as a proxy) is refused and recorded, never forwarded.
        conn = http.client.HTTPConnection("127.0.0.1", int(hub.endpoint.rsplit(":", 1)[1]), timeout=10)
        conn.request("GET", "http://example.invalid/some/path")
        assert conn.getresponse().status == 502
        conn.close()
        assert hub.stray_requests == [("GET", "http://example.invalid/some/path")]

    # State survives a restart on the same folder.
    with LocalHub(tmp_path / "hub") as again:
        assert again.repo_sha("org/repo") == sha
        assert again.read_file("org/repo", "dir/blob.bin") == data
        assert again.list_files("org/repo") == [".gitattributes", "a.txt", "dir/blob.bin"]
    with pytest.raises(ValueError, match="no file 'nope.txt'"):
        again.read_file("org/repo", "nope.txt")


def test_hub_env_and_run_with_hub_failure(tmp_path):
    with LocalHub(tmp_path / "hub") as hub:
        env = hub_env(hub, base={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "/somewhere", "PATH": "/usr/bin"})
        assert env["HF_ENDPOINT"] == hub.endpoint and env["HF_HUB_OFFLINE"] == "0"
        assert env["HF_HUB_DISABLE_XET"] == "1" and env["HF_TOKEN"] == hub.token
        assert "HF_HUB_CACHE" not in env and env["HF_HOME"].startswith(str(tmp_path))
        assert env["PATH"] == "/usr/bin"

        result = run_with_hub(hub, "from huggingface_hub import constants; print(constants.ENDPOINT)")
        assert isinstance(result, subprocess.CompletedProcess) and result.stdout.strip() == hub.endpoint

        with pytest.raises(HubSubprocessError, match="exited with 3") as info:
            run_with_hub(hub, [sys.executable, "-c", "import sys; sys.stderr.write('boom-marker'); sys.exit(3)"])
        assert "boom-marker" in str(info.value) and info.value.result.returncode == 3
    with pytest.raises(ValueError, match="not running"):
        _ = hub.endpoint

    with local_hub() as temporary:  # a hub in a temporary folder, removed on exit
        assert temporary.endpoint.startswith("http://127.0.0.1:") and temporary.root.is_dir()
    assert not temporary.root.exists()
