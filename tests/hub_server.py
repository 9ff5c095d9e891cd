"""A small Hugging Face Hub-compatible HTTP server for tests, so that pushing and loading models and datasets can
be exercised with the unmodified ``huggingface_hub`` client (and ``datasets`` / ``transformers`` on top of it)
without any network.

Usage (from a test; ``tests/`` is on ``sys.path`` under pytest's default import mode)::

    from hub_server import LocalHub, run_with_hub

    def test_push(tmp_path):
        with LocalHub(tmp_path / "hub") as hub:
            run_with_hub(hub, '''
    from huggingface_hub import HfApi
    HfApi().create_repo("test-user/tiny", exist_ok=True)
    HfApi().upload_folder(repo_id="test-user/tiny", folder_path="ckpt")
    ''', cwd=tmp_path)
            assert hub.read_file("test-user/tiny", "config.json") == (tmp_path / "ckpt" / "config.json").read_bytes()

``huggingface_hub`` reads ``HF_ENDPOINT`` and friends at import time, so the client always runs in a SUBPROCESS:
:func:`run_with_hub` starts ``python -c CODE`` (or any argv, e.g. ``["sharegpt4v", "push", ...]``) with the
environment of :func:`hub_env` and raises :class:`HubSubprocessError` (exit code, stderr, the server's last
requests) when it fails. :func:`hub_env` sets ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_DISABLE_XET=1``,
``HF_HUB_OFFLINE=0`` (and the ``datasets`` / ``transformers`` offline switches to 0), ``HF_UPDATE_DOWNLOAD_COUNTS=0``
(``datasets`` would ping S3), a private ``HF_HOME`` (no cache shared with the test process or between hubs), and points ``HTTP(S)_PROXY`` at this server with
``NO_PROXY=127.0.0.1,localhost``: requests to the hub go straight to it, and any other outbound request (e.g.
``datasets`` asking ``datasets-server.<endpoint host>`` for exported infos, or anything aimed at huggingface.co)
reaches this server as a proxy request, is answered 502 without any DNS lookup or network traffic, and is
recorded in :attr:`LocalHub.stray_requests`.

The server binds to 127.0.0.1 on an ephemeral port, keeps its state in ``root`` (content-addressed blobs under
``blobs/``, one ``repo.json`` per repo with refs and commits, a global commit counter in ``hub.json``) and can be
reopened on the same folder. One user (``hub.user``, default ``test-user``) with one write token
(``hub.token``) exists; reads are anonymous, writes need ``Authorization: Bearer <hub.token>``. Any namespace
may be used when creating repos.

Upload modes: by default (``lfs=True``) ``preupload`` follows the Hub's rule (LFS for files over 10 MiB, files
with a NUL byte in their sample and the binary extensions of the default ``.gitattributes``, e.g. ``*.safetensors``,
``*.parquet``), so the client uploads those through the git-LFS batch API, a ``PUT`` to an upload URL on this
server and a verify call, and commits them as ``lfsFile`` pointers; other files go inline (base64) in the commit's
ndjson. This default is needed by ``datasets``' ``push_to_hub``, which deletes each parquet shard right after
``preupload_lfs_files`` and so breaks if the shard is not LFS. With ``LocalHub(root, lfs=False)`` every file is
``regular`` and travels inline in the commit (``upload_folder`` / ``push_to_hub`` of ``transformers`` work, the
``datasets`` push does not). Xet is never offered: the client must run with ``HF_HUB_DISABLE_XET=1``.

Supported routes (``{type}`` is ``models``, ``datasets`` or ``spaces``; ``{prefix}`` is empty for models and
``datasets/`` or ``spaces/`` otherwise; ``{repo}`` is ``namespace/name``; ``{rev}`` is a branch, tag or full
commit sha, URL-quoted, or a raw ``refs/convert/...`` / ``refs/pr/N``):

==========================================================  ====================================================
``GET  /api/whoami-v2``                                     user ``hub.user`` (401 without the right token)
``POST /api/repos/create``                                  ``{name, organization, type, private|visibility}``;
                                                            409 if it exists (``exist_ok`` works); the new repo
                                                            has an initial commit with a ``.gitattributes``
``DELETE /api/repos/delete``                                ``{name, organization, type}``
``POST /api/validate-yaml``                                 always valid (``{"errors": [], "warnings": []}``)
``GET  /api/{type}/{repo}[/revision/{rev}]``                repo info: ``id``, ``sha``, ``siblings`` (with
                                                            ``size``/``blobId``/``lfs`` when ``?blobs=true``),
                                                            ``lastModified``, ``private``, ...
``POST /api/{type}/{repo}/preupload/{rev}``                 ``{"files": [{path, uploadMode, shouldIgnore, oid}]}``
``POST /api/{type}/{repo}/commit/{rev}``                    ndjson: ``header`` (``parentCommit`` checked),
                                                            ``file`` (base64), ``lfsFile``, ``deletedFile``,
                                                            ``deletedFolder``; ``rev`` must be a branch;
                                                            ``create_pr`` is refused (400)
``GET  /api/{type}/{repo}/tree/{rev}[/{path}]``             ``?recursive=true`` and ``?expand=true``
                                                            (``lastCommit``); one page, no ``Link`` header
``POST /api/{type}/{repo}/paths-info/{rev}``                form or JSON ``paths`` (repeated) and ``expand``
``GET  /api/{type}/{repo}/refs``                            branches and tags
``GET  /api/{type}/{repo}/commits/{rev}``                   history, newest first
``POST|DELETE /api/{type}/{repo}/branch/{branch}``          create (``startingPoint``) / delete a branch
``POST /api/{type}/{repo}/tag/{rev}``, ``DELETE .../tag/{t}``  create / delete a tag
``PUT  /api/{type}/{repo}/settings``                        ``private`` / ``visibility`` only
``GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}``           file bytes with ``X-Repo-Commit``, ``ETag`` (git
                                                            sha1, or sha256 plus ``X-Linked-Etag`` /
                                                            ``X-Linked-Size`` for LFS files),
                                                            ``Content-Length``, ``Accept-Ranges`` and ``Range``
                                                            (206 / 416)
``POST /{prefix}{repo}.git/info/lfs/objects/batch``         LFS upload batch (basic transfer)
``PUT  /_lfs/upload/{oid}``, ``POST /_lfs/verify/{oid}``    LFS upload URL and verify
==========================================================  ====================================================

Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and
``X-Error-Message`` headers, so the client raises its usual exception types. Not supported: pull requests,
gated/private access control beyond the single token, ``.gitignore`` handling in preupload (``shouldIgnore`` is
always false), pagination, Xet, Spaces runtime endpoints, dataset-viewer endpoints.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "HubSubprocessError",
    "LocalHub",
    "hub_env",
    "local_hub",
    "run_with_hub",
]

DEFAULT_USER = "test-user"
DEFAULT_TOKEN = "hf_localtesthubtoken0000000000000000"

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# The .gitattributes the Hub puts in a new repo (the LFS-tracked patterns decide the upload mode with lfs=True).
LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz "
    "*.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar *.tflite *.tgz *.wasm *.xz "
    "*.zip *.zst *tfevents* *.jpg *.jpeg *.png *.webp *.mp3 *.wav *.flac"
).split()
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS).encode()
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
SPECIAL_REF = re.compile(r"^refs/(convert/[^/]+|pr/\d+)$")
SHA1 = re.compile(r"^[0-9a-f]{40}$")


def _now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _glob_match(pattern: str, path: str) -> bool:
    import fnmatch

    name = path.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(path, pattern)


class HubError(Exception):
    """An HTTP error answered by the server, with the Hub's error code header."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


class HubSubprocessError(RuntimeError):
    """A client subprocess started by :func:`run_with_hub` failed."""

    def __init__(self, message: str, result: subprocess.CompletedProcess):
        super().__init__(message)
        self.result = result


class _Repo:
    """One repo: refs, commits (each a full manifest path -> file entry) and metadata, persisted in repo.json."""

    def __init__(self, folder: Path, data: dict[str, Any]):
        self.folder = folder
        self.data = data

    @property
    def repo_id(self) -> str:
        return self.data["id"]

    @property
    def repo_type(self) -> str:
        return self.data["type"]

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "repo.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.folder / "repo.json")

    def resolve(self, revision: str) -> str | None:
        refs = self.data["refs"]
        if revision in refs["branches"]:
            return refs["branches"][revision]
        if revision in refs["tags"]:
            return refs["tags"][revision]
        if SHA1.match(revision) and revision in self.data["commits"]:
            return revision
        return None

    def manifest(self, sha: str) -> dict[str, dict[str, Any]]:
        return self.data["commits"][sha]["files"]

    def commit(self, sha: str) -> dict[str, Any]:
        return self.data["commits"][sha]


class LocalHub:
    """A Hub-compatible HTTP server on 127.0.0.1 (ephemeral port) storing its repos under ``root``.

    Use as a context manager (``with LocalHub(tmp_path / "hub") as hub: ...``) or call :meth:`start` /
    :meth:`stop`. ``hub.endpoint`` is the ``HF_ENDPOINT`` value, ``hub.token`` the write token, ``hub.user``
    the user name. :meth:`read_file`, :meth:`list_files`, :meth:`repo_sha`, :meth:`commits` and
    :meth:`create_repo` inspect or prepare the state directly (no HTTP). ``hub.requests`` logs
    ``(method, path, status)`` of every request; ``hub.stray_requests`` the outbound requests it blocked.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        user: str = DEFAULT_USER,
        token: str = DEFAULT_TOKEN,
        lfs: bool = True,
    ):
        self.root = Path(root)
        self.user = user
        self.token = token
        self.lfs = lfs
        self.requests: list[tuple[str, str, int]] = []
        self.stray_requests: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._blobs = self.root / "blobs"
        self._blobs.mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(exist_ok=True)
        state = self.root / "hub.json"
        self._counter = json.loads(state.read_text())["commit_counter"] if state.exists() else 0
        for repo_json in sorted((self.root / "repos").glob("*/*/*/repo.json")):
            data = json.loads(repo_json.read_text())
            self._repos[(data["type"], data["id"])] = _Repo(repo_json.parent, data)

    # ----------------------------------------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise ValueError("LocalHub is not running: call start() or use it as a context manager first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHub:
        if self._server is not None:
            return self
        hub = self

        class Handler(_HubRequestHandler):
            pass

        Handler.hub = hub
        server = _Server(("127.0.0.1", 0), Handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- direct inspection
    def _repo(self, repo_id: str, repo_type: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} '{repo_id}'", "RepoNotFound")
        return repo

    def _commit_of(self, repo: _Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise HubError(
                404, f"Invalid rev id: {revision} for {repo.repo_type} '{repo.repo_id}'", "RevisionNotFound"
            )
        return sha

    def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False) -> str:
        """Create a repo directly (no HTTP), with the Hub's initial commit; returns its id. Idempotent."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                return repo_id
            return self._create_repo(repo_id, repo_type, private)

    def repo_sha(self, repo_id: str, *, repo_type: str = "model", revision: str = "main") -> str:
        """The commit sha a revision of a repo points to."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            return self._commit_of(repo, revision)

    def list_files(self, repo_id: str, *, repo_type: str = "model", revision: str = "main") -> list[str]:
        """Sorted paths of the files of a repo at a revision (``.gitattributes`` included)."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            return sorted(repo.manifest(self._commit_of(repo, revision)))

    def read_file(self, repo_id: str, path: str, *, repo_type: str = "model", revision: str = "main") -> bytes:
        """The bytes of a file of a repo at a revision (raises ValueError naming what is missing)."""
        with self._lock:
            try:
                repo = self._repo(repo_id, repo_type)
                entry = repo.manifest(self._commit_of(repo, revision)).get(path)
            except HubError as e:
                raise ValueError(e.message) from None
            if entry is None:
                raise ValueError(f"{repo_type} repo '{repo_id}' has no file '{path}' at revision '{revision}'")
            return (self._blobs / entry["sha256"]).read_bytes()

    def commits(self, repo_id: str, *, repo_type: str = "model", revision: str = "main") -> list[dict[str, Any]]:
        """History of a revision, newest first: dicts with ``id``, ``title``, ``message``, ``date``, ``parents``."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            return [
                {k: v for k, v in repo.commit(sha).items() if k != "files"} | {"id": sha}
                for sha in self._history(repo, self._commit_of(repo, revision))
            ]

    def is_lfs(self, repo_id: str, path: str, *, repo_type: str = "model", revision: str = "main") -> bool:
        """Whether a file was committed as an LFS pointer (``lfsFile``) rather than inline."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            return bool(repo.manifest(self._commit_of(repo, revision))[path]["lfs"])

    # ------------------------------------------------------------------------------------------- internals
    def _history(self, repo: _Repo, sha: str) -> list[str]:
        out = []
        current: str | None = sha
        while current is not None:
            out.append(current)
            parents = repo.commit(current)["parents"]
            current = parents[0] if parents else None
        return out

    def _store_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self._blobs / sha256
        if not target.exists():
            tmp = self._blobs / f".{sha256}.{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return sha256

    def _next_sha(self, *parts: str) -> str:
        self._counter += 1
        (self.root / "hub.json").write_text(json.dumps({"commit_counter": self._counter}))
        return hashlib.sha1("\n".join([str(self._counter), *parts]).encode()).hexdigest()

    def _file_entry(self, data: bytes, lfs: bool, sha256: str | None = None) -> dict[str, Any]:
        sha256 = sha256 or self._store_blob(data)
        size = len(data)
        oid = _git_blob_oid(_lfs_pointer(sha256, size)) if lfs else _git_blob_oid(data)
        return {"sha256": sha256, "size": size, "oid": oid, "lfs": lfs}

    def _create_repo(self, repo_id: str, repo_type: str, private: bool) -> str:
        namespace, name = repo_id.split("/")
        folder = self.root / "repos" / repo_type / namespace / name
        repo = _Repo(
            folder,
            {
                "id": repo_id,
                "type": repo_type,
                "private": private,
                "created_at": _now(),
                "uid": uuid.uuid4().hex[:24],
                "refs": {"branches": {}, "tags": {}},
                "commits": {},
            },
        )
        self._repos[(repo_type, repo_id)] = repo
        self._make_commit(repo, "main", [("add", ".gitattributes", GITATTRIBUTES, False)], "initial commit", "")
        return repo_id

    def _make_commit(
        self,
        repo: _Repo,
        branch: str,
        operations: list[tuple[str, str, Any, bool]],
        title: str,
        message: str,
    ) -> str:
        """Apply ``(kind, path, payload, lfs)`` operations on top of ``branch`` (created if absent)."""
        parent = repo.data["refs"]["branches"].get(branch)
        files = dict(repo.manifest(parent)) if parent else {}
        changed: list[str] = []
        for kind, path, payload, lfs in operations:
            if kind == "add":
                files[path] = self._file_entry(payload, lfs) if isinstance(payload, bytes) else payload
                changed.append(path)
            elif kind == "delete_file":
                if path not in files:
                    raise HubError(404, f"Cannot delete '{path}': no such file in '{repo.repo_id}'", "EntryNotFound")
                del files[path]
            elif kind == "delete_folder":
                prefix = path.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise HubError(404, f"Cannot delete folder '{path}': nothing under it", "EntryNotFound")
                for p in doomed:
                    del files[p]
        date = _now()
        sha = self._next_sha(repo.repo_type, repo.repo_id, parent or "", title, date)
        for path in changed:
            files[path] = dict(files[path], last_commit=sha)
        repo.data["commits"][sha] = {
            "parents": [parent] if parent else [],
            "title": title,
            "message": message,
            "date": date,
            "author": self.user,
            "files": files,
        }
        repo.data["refs"]["branches"][branch] = sha
        repo.data["last_modified"] = date
        repo.save()
        return sha

    def _upload_mode(self, path: str, size: int, sample: bytes) -> str:
        if not self.lfs or size == 0:
            return "regular"
        if size > LFS_SIZE_THRESHOLD or b"\0" in sample:
            return "lfs"
        return "lfs" if any(_glob_match(p, path) for p in LFS_PATTERNS) else "regular"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # keep-alive connections of a finished client never block stop()


def _validate_path(path: str) -> str:
    if not path or path.startswith("/") or ".." in path.split("/") or path.split("/")[0] == ".git":
        raise HubError(400, f"Invalid path in repo: '{path}'")
    return path


def _split_revision(segments: list[str]) -> tuple[str, list[str]]:
    """First (raw, URL-quoted) segments -> (revision, remaining segments); keeps raw ``refs/pr/N`` together."""
    if not segments or not segments[0]:
        raise HubError(400, "Missing revision in URL")
    if segments[0] == "refs" and len(segments) >= 3 and SPECIAL_REF.match("/".join(segments[:3])):
        return "/".join(segments[:3]), segments[3:]
    return unquote(segments[0]), segments[1:]


class _HubRequestHandler(http.server.BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"
    server_version = "LocalHub/1.0"

    # ------------------------------------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        content_length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.hub.requests.append((self.command, self.path, status))

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _error(self, error: HubError) -> None:
        headers = dict(error.headers)
        headers["X-Error-Message"] = error.message.replace("\n", " ")[:500]
        if error.code:
            headers["X-Error-Code"] = error.code
        self._json(error.status, {"error": error.message, **error.extra}, headers=headers)

    def _body(self) -> bytes:
        """The request body (read once, before routing, so that an early error never leaves it in the stream)."""
        return self._raw_body

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Any:
        raw = self._body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise HubError(400, f"Request body is not valid JSON: {e}") from None

    def _require_token(self) -> None:
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {self.hub.token}":
            raise HubError(
                401, "Invalid credentials in Authorization header", headers={"WWW-Authenticate": 'Bearer realm="hub"'}
            )

    def _dispatch(self) -> None:
        self._raw_body = self._read_body()
        if self.path.startswith(("http://", "https://")):
            # An absolute-form request: this server is being used as the HTTP proxy of a client subprocess
            # (see hub_env) for a host other than itself. Refuse it, without any lookup or outbound traffic.
            self.hub.stray_requests.append((self.command, self.path))
            self._json(502, {"error": f"LocalHub blocked an outbound request to {self.path}"})
            return
        try:
            self._route()
        except HubError as e:
            self._error(e)
        except Exception as e:  # a bug in the server: report it to the client instead of hanging up
            import traceback

            traceback.print_exc()
            self._json(500, {"error": f"LocalHub internal error: {type(e).__name__}: {e}"})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def do_CONNECT(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        self.hub.stray_requests.append(("CONNECT", self.path))
        self._json(502, {"error": f"LocalHub blocked an outbound connection to {self.path}"})
        self.close_connection = True

    # ---------------------------------------------------------------------------------------------- routing
    def _route(self) -> None:
        url = urlsplit(self.path)
        self.query = {k: v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        segments = url.path.split("/")[1:]
        method = self.command
        if segments[:1] == ["api"]:
            rest = segments[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if rest == ["repos", "delete"] and method == "DELETE":
                return self._delete_repo()
            if rest == ["validate-yaml"] and method == "POST":
                self._body()
                return self._json(200, {"errors": [], "warnings": []})
            if len(rest) >= 3 and rest[0] in REPO_TYPES:
                repo_type = REPO_TYPES[rest[0]]
                repo_id = f"{unquote(rest[1])}/{unquote(rest[2])}"
                return self._repo_api(repo_type, repo_id, rest[3:])
            raise HubError(404, f"LocalHub has no route {method} {url.path}")
        if segments[:2] == ["_lfs", "upload"] and method == "PUT":
            return self._lfs_upload(segments[2])
        if segments[:2] == ["_lfs", "verify"] and method == "POST":
            return self._lfs_verify(segments[2])
        repo_type = "model"
        if segments and segments[0] in ("datasets", "spaces") and len(segments) >= 3:
            repo_type = REPO_TYPES[segments[0]]
            segments = segments[1:]
        if len(segments) >= 4 and segments[2] == "resolve" and method in ("GET", "HEAD"):
            revision, path_segments = _split_revision(segments[3:])
            repo_id = f"{unquote(segments[0])}/{unquote(segments[1])}"
            return self._resolve(repo_type, repo_id, revision, unquote("/".join(path_segments)))
        if len(segments) == 6 and segments[1].endswith(".git") and segments[2:] == ["info", "lfs", "objects", "batch"]:
            repo_id = f"{unquote(segments[0])}/{unquote(segments[1][: -len('.git')])}"
            return self._lfs_batch(repo_type, repo_id)
        raise HubError(404, f"LocalHub has no route {method} {url.path}")

    def _repo_api(self, repo_type: str, repo_id: str, rest: list[str]) -> None:
        method = self.command
        action = rest[0] if rest else ""
        if method == "GET" and action in ("", "revision"):
            revision = _split_revision(rest[1:])[0] if action == "revision" else "main"
            return self._repo_info(repo_type, repo_id, revision)
        if method == "POST" and action == "preupload":
            return self._preupload(repo_type, repo_id, _split_revision(rest[1:])[0])
        if method == "POST" and action == "commit":
            return self._commit(repo_type, repo_id, _split_revision(rest[1:])[0])
        if method == "GET" and action == "tree":
            revision, path_segments = _split_revision(rest[1:])
            return self._tree(repo_type, repo_id, revision, unquote("/".join(path_segments)).strip("/"))
        if method == "POST" and action == "paths-info":
            return self._paths_info(repo_type, repo_id, _split_revision(rest[1:])[0])
        if method == "GET" and action == "refs":
            return self._refs(repo_type, repo_id)
        if method == "GET" and action == "commits":
            return self._list_commits(repo_type, repo_id, _split_revision(rest[1:])[0])
        if action == "branch" and method in ("POST", "DELETE"):
            return self._branch(repo_type, repo_id, unquote("/".join(rest[1:])))
        if action == "tag" and method in ("POST", "DELETE"):
            return self._tag(repo_type, repo_id, unquote("/".join(rest[1:])))
        if action == "settings" and method == "PUT":
            return self._settings(repo_type, repo_id)
        raise HubError(404, f"LocalHub has no route {method} /api/{repo_type}s/{repo_id}/{'/'.join(rest)}")

    # -------------------------------------------------------------------------------------------- handlers
    def _whoami(self) -> None:
        self._require_token()
        hub = self.hub
        self._json(
            200,
            {
                "type": "user",
                "id": hashlib.sha1(hub.user.encode()).hexdigest()[:24],
                "name": hub.user,
                "fullname": "Local Test User",
                "email": f"{hub.user}@localhost",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": [],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "local-hub", "role": "write", "createdAt": _now()},
                },
            },
        )

    def _repo_id_from_payload(self, payload: dict[str, Any]) -> tuple[str, str]:
        name = payload.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise HubError(400, f"Invalid repo name: {name!r}")
        namespace = payload.get("organization") or self.hub.user
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type: {repo_type!r}")
        return f"{namespace}/{name}", repo_type

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"

    def _create_repo(self) -> None:
        self._require_token()
        payload = self._json_body()
        repo_id, repo_type = self._repo_id_from_payload(payload)
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        url = self._repo_url(repo_type, repo_id)
        with self.hub._lock:
            if (repo_type, repo_id) in self.hub._repos:
                # The client reads the url from the 409 answer too (create_repo(..., exist_ok=True)).
                raise HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
            self.hub._create_repo(repo_id, repo_type, private)
        self._json(200, {"url": url, "name": repo_id, "id": self.hub._repos[(repo_type, repo_id)].data["uid"]})

    def _delete_repo(self) -> None:
        self._require_token()
        repo_id, repo_type = self._repo_id_from_payload(self._json_body())
        with self.hub._lock:
            repo = self.hub._repo(repo_id, repo_type)
            del self.hub._repos[(repo_type, repo_id)]
            shutil.rmtree(repo.folder, ignore_errors=True)
        self._send(200, b"", content_type="text/plain")

    def _settings(self, repo_type: str, repo_id: str) -> None:
        self._require_token()
        payload = self._json_body()
        with self.hub._lock:
            repo = self.hub._repo(repo_id, repo_type)
            if "private" in payload:
                repo.data["private"] = bool(payload["private"])
            if "visibility" in payload:
                repo.data["private"] = payload["visibility"] == "private"
            repo.save()
        self._json(200, {})

    def _file_json(self, path: str, entry: dict[str, Any], repo: _Repo, expand: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
        if entry["lfs"]:
            pointer = _lfs_pointer(entry["sha256"], entry["size"])
            out["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": len(pointer)}
        if expand:
            commit = repo.commit(entry["last_commit"])
            out["lastCommit"] = {"id": entry["last_commit"], "title": commit["title"], "date": commit["date"]}
        return out

    def _folder_json(self, path: str, files: dict[str, dict[str, Any]], repo: _Repo, expand: bool) -> dict[str, Any]:
        prefix = path + "/"
        inside = sorted((p, e) for p, e in files.items() if p.startswith(prefix))
        oid = hashlib.sha1("".join(f"{p}\0{e['oid']}\n" for p, e in inside).encode()).hexdigest()
        out: dict[str, Any] = {"type": "directory", "oid": oid, "size": 0, "path": path}
        if expand:
            latest = max((repo.commit(e["last_commit"])["date"], e["last_commit"]) for _, e in inside)[1]
            commit = repo.commit(latest)
            out["lastCommit"] = {"id": latest, "title": commit["title"], "date": commit["date"]}
        return out

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        with self.hub._lock:
            repo = self.hub._repo(repo_id, repo_type)
            sha = self.hub._commit_of(repo, revision)
            files = repo.manifest(sha)
            commit = repo.commit(sha)
            siblings = []
            for path in sorted(files):
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    entry = files[path]
                    sibling.update(size=entry["size"], blobId=entry["oid"])
                    if entry["lfs"]:
                        pointer_size = len(_lfs_pointer(entry["sha256"], entry["size"]))
                        sibling["lfs"] = {
                            "size": entry["size"],
                            "sha256": entry["sha256"],
                            "pointerSize": pointer_size,
                        }
                siblings.append(sibling)
            info: dict[str, Any] = {
                "_id": repo.data["uid"],
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "lastModified": commit["date"],
                "createdAt": repo.data["created_at"],
                "private": repo.data["private"],
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(e["size"] for e in files.values()),
            }
            if repo_type == "model":
                info["modelId"] = repo_id
        self._json(200, info)

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_token()
        payload = self._json_body()
        if self.query.get("create_pr", ["0"])[0] not in ("", "0", "false"):
            raise HubError(400, "LocalHub does not support pull requests (create_pr)")
        with self.hub._lock:
            repo = self.hub._repo(repo_id, repo_type)
            sha = repo.resolve(revision)
            files = repo.manifest(sha) if sha else {}
            answer = []
            for item in payload.get("files", []):
                path = _validate_path(item["path"])
                sample = base64.b64decode(item.get("sample", ""))
                mode = self.hub._upload_mode(path, int(item["size"]), sample)
                existing = files.get(path)
                oid = None  # the client skips files whose local oid equals this one
                if existing is not None and mode == "lfs":
                    oid = existing["sha256"]
                elif existing is not None:
                    blob = self.hub._blobs / existing["sha256"]
                    oid = _git_blob_oid(blob.read_bytes()) if existing["lfs"] else existing["oid"]
                answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": answer, "commitOid": sha})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_token()
        if self.query.get("create_pr", ["0"])[0] not in ("", "0", "false"):
            raise HubError(400, "LocalHub does not support pull requests (create_pr)")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header: dict[str, Any] = {}
        operations: list[tuple[str, str, Any, bool]] = []
        hub = self.hub
        for line in lines:
            key, value = line.get("key"), line.get("value", {})
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {value.get('path')}")
                operations.append(("add", _validate_path(value["path"]), base64.b64decode(value["content"]), False))
            elif key == "lfsFile":
                oid = value["oid"]
                blob = hub._blobs / oid
                if not blob.exists():
                    raise HubError(422, f"LFS object {oid} for '{value['path']}' was never uploaded")
                size = blob.stat().st_size
                if "size" in value and int(value["size"]) != size:
                    raise HubError(422, f"LFS object {oid} has size {size}, commit says {value['size']}")
                pointer = _lfs_pointer(oid, size)
                entry = {"sha256": oid, "size": size, "oid": _git_blob_oid(pointer), "lfs": True}
                operations.append(("add", _validate_path(value["path"]), entry, True))
            elif key == "deletedFile":
                operations.append(("delete_file", _validate_path(value["path"]), None, False))
            elif key == "deletedFolder":
                operations.append(("delete_folder", _validate_path(value["path"].rstrip("/")), None, False))
            else:
                raise HubError(400, f"Unknown commit operation key {key!r}")
        if "summary" not in header:
            raise HubError(400, "Commit payload has no header line with a summary")
        with hub._lock:
            repo = hub._repo(repo_id, repo_type)
            if revision not in repo.data["refs"]["branches"]:
                if repo.resolve(revision) is not None:
                    raise HubError(400, f"Can only commit to a branch, not to '{revision}'")
                raise HubError(404, f"Branch '{revision}' does not exist in '{repo_id}'", "RevisionNotFound")
            parent_commit = header.get("parentCommit")
            head = repo.data["refs"]["branches"][revision]
            if parent_commit and not head.startswith(parent_commit):
                raise HubError(412, f"A commit has happened since {parent_commit}: '{revision}' is now at {head}")
            sha = hub._make_commit(repo, revision, operations, header["summary"], header.get("description", ""))
        self._json(
            200,
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        with self.hub._lock:
            repo = self.hub._repo(repo_id, repo_type)
            files = repo.manifest(self.hub._commit_of(repo, revision))
            prefix = path + "/" if path else ""
            if path and not any(p.startswith(prefix) for p in files):
                raise HubError(404, f"Folder '{path}' not found in '{repo_id}' at '{revision}'", "EntryNotFound")
            entries: dict[str, dict[str, Any]] = {}
            for file_path, entry in sorted(files.items()):
                if not file_path.startswith(prefix):
                    continue
                parts = file_path[len(prefix) :].split("/")
                for depth in range(1, len(parts)):
                    if not recursive and depth > 1:
                        break
                    folder = prefix + "/".join(parts[:depth])
                    if folder not in entries:
                        entries[folder] = self._folder_json(folder, files, repo, expand)
                if recursive or len(parts) == 1:
                    entries[file_path] = self._file_json(file_path, entry, repo, expand)
        self._json(200, list(entries.values()))

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        raw = self._body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(raw or b"{}")
            paths = payload.get("paths", [])
            paths = [paths] if isinstance(paths, str) else paths
            expand = bool(payload.get("expand"))
        else:
            form = parse_qs(raw.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
        with self.hub._lock:
            repo = self.hub._repo(repo_id, repo_type)
            files = repo.manifest(self.hub._commit_of(repo, revision))
            out = []
            for path in paths:
                path = path.strip("/")
                if path in files:
                    out.append(self._file_json(path, files[path], repo, expand))
                elif any(p.startswith(path + "/") for p in files):
                    out.append(self._folder_json(path, files, repo, expand))
        self._json(200, out)

    def _refs(self, repo_type: str, repo_id: str) -> None:
        with self.hub._lock:
            refs = self.hub._repo(repo_id, repo_type).data["refs"]
            branches = [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in sorted(refs["branches"].items())
            ]
            tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in sorted(refs["tags"].items())]
        self._json(200, {"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    def _list_commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        hub = self.hub
        with hub._lock:
            repo = hub._repo(repo_id, repo_type)
            out = []
            for sha in hub._history(repo, hub._commit_of(repo, revision)):
                commit = repo.commit(sha)
                message = commit["title"] + ("\n\n" + commit["message"] if commit["message"] else "")
                out.append(
                    {
                        "id": sha,
                        "authors": [{"user": commit["author"]}],
                        "date": commit["date"],
                        "title": commit["title"],
                        "message": message,
                    }
                )
        self._json(200, out)

    def _branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        self._require_token()
        payload = self._json_body() if self.command == "POST" else {}
        hub = self.hub
        with hub._lock:
            repo = hub._repo(repo_id, repo_type)
            branches = repo.data["refs"]["branches"]
            if self.command == "DELETE":
                if branch not in branches:
                    raise HubError(404, f"Branch '{branch}' does not exist in '{repo_id}'", "RevisionNotFound")
                if branch == "main":
                    raise HubError(403, "Cannot delete the main branch")
                del branches[branch]
            else:
                if not branch or branch in branches or branch in repo.data["refs"]["tags"]:
                    raise HubError(409, f"Reference '{branch}' already exists in '{repo_id}'")
                branches[branch] = hub._commit_of(repo, payload.get("startingPoint") or "main")
            repo.save()
        self._json(200, {})

    def _tag(self, repo_type: str, repo_id: str, name: str) -> None:
        self._require_token()
        hub = self.hub
        with hub._lock:
            repo = hub._repo(repo_id, repo_type)
            tags = repo.data["refs"]["tags"]
            if self.command == "DELETE":
                if name not in tags:
                    raise HubError(404, f"Tag '{name}' does not exist in '{repo_id}'", "RevisionNotFound")
                del tags[name]
            else:
                payload = self._json_body()
                tag = payload.get("tag")
                if not tag or tag in tags or tag in repo.data["refs"]["branches"]:
                    raise HubError(409, f"Reference '{tag}' already exists in '{repo_id}'")
                tags[tag] = hub._commit_of(repo, name)
            repo.save()
        self._json(200, {})

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        hub = self.hub
        with hub._lock:
            repo = hub._repo(repo_id, repo_type)
            sha = hub._commit_of(repo, revision)
            entry = repo.manifest(sha).get(path)
            if entry is None:
                raise HubError(
                    404,
                    f"Entry not found: '{path}' in {repo_type} '{repo_id}' at '{revision}'",
                    "EntryNotFound",
                    headers={"X-Repo-Commit": sha},
                )
        size = entry["size"]
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"ETag": f'"{entry["sha256"]}"', "X-Linked-Etag": f'"{entry["sha256"]}"'})
            headers["X-Linked-Size"] = str(size)
        else:
            headers["ETag"] = f'"{entry["oid"]}"'
        start, end, status = 0, size - 1, 200
        range_header = self.headers.get("Range")
        if range_header:
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header)
            if match is None or match.groups() == ("", ""):
                raise HubError(400, f"Unsupported Range header: {range_header!r}")
            first, last = match.groups()
            if first == "":
                start, end = max(size - int(last), 0), size - 1
            else:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            if start >= size or start > end:
                raise HubError(
                    416,
                    f"Range {range_header} not satisfiable for size {size}",
                    headers={"Content-Range": f"bytes */{size}"} | {"X-Repo-Commit": sha},
                )
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "GET" and length:
            with open(hub._blobs / entry["sha256"], "rb") as f:
                f.seek(start)
                remaining = length
                while remaining:
                    chunk = f.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        hub.requests.append((self.command, self.path, status))

    # ------------------------------------------------------------------------------------------------- LFS
    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._require_token()
        payload = self._json_body()
        hub = self.hub
        with hub._lock:
            hub._repo(repo_id, repo_type)
        if payload.get("operation") != "upload":
            raise HubError(400, f"LocalHub only supports LFS uploads, not {payload.get('operation')!r}")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not (hub._blobs / oid).exists():
                answer["actions"] = {
                    "upload": {"href": f"{hub.endpoint}/_lfs/upload/{oid}?size={size}", "header": {}},
                    "verify": {"href": f"{hub.endpoint}/_lfs/verify/{oid}", "header": {}},
                }
            objects.append(answer)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), "application/vnd.git-lfs+json")

    def _lfs_upload(self, oid: str) -> None:
        data = self._body()
        expected = self.query.get("size", [None])[0]
        if hashlib.sha256(data).hexdigest() != oid or (expected is not None and int(expected) != len(data)):
            raise HubError(400, f"Uploaded LFS content does not match oid {oid} / size {expected}")
        with self.hub._lock:
            self.hub._store_blob(data)
        self._send(200, b"", content_type="text/plain", headers={"ETag": f'"{oid}"'})

    def _lfs_verify(self, oid: str) -> None:
        self._require_token()
        payload = self._json_body()
        blob = self.hub._blobs / oid
        if not blob.exists() or blob.stat().st_size != int(payload.get("size", -1)):
            raise HubError(404, f"LFS object {oid} is missing or has the wrong size")
        self._json(200, {"success": True})


# --------------------------------------------------------------------------------------------- client side
def hub_env(hub: LocalHub, base: Mapping[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """The environment a client subprocess needs to talk to ``hub`` (and nothing else).

    Starts from ``base`` (default: ``os.environ``) and sets ``HF_ENDPOINT``, ``HF_TOKEN``,
    ``HF_HUB_DISABLE_XET=1``, ``HF_HUB_OFFLINE=0``, ``HF_DATASETS_OFFLINE=0``, ``TRANSFORMERS_OFFLINE=0``,
    ``HF_HOME`` (a fresh cache under the hub's root), telemetry off, and HTTP(S)_PROXY pointing at the hub with
    ``NO_PROXY=127.0.0.1,localhost`` (outbound requests are blocked and recorded, see module docstring).
    ``overrides`` are applied last.
    """
    env = dict(os.environ if base is None else base)
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH"):
        env.pop(key, None)
    for key in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        env.pop(key, None)
    endpoint = hub.endpoint
    env.update(
        {
            "HF_ENDPOINT": endpoint,
            "HF_TOKEN": hub.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(hub.root / "client_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_ETAG_TIMEOUT": "30",
            "HF_UPDATE_DOWNLOAD_COUNTS": "0",
            "HTTP_PROXY": endpoint,
            "HTTPS_PROXY": endpoint,
            "ALL_PROXY": endpoint,
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env.update(overrides)
    return env


def run_with_hub(
    hub: LocalHub,
    code_or_argv: str | Sequence[str],
    *,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a client in a subprocess with :func:`hub_env` and return the ``CompletedProcess`` (text output).

    ``code_or_argv``: a string is run as ``python -c CODE`` (with this interpreter); a sequence is an argv run as
    is (e.g. ``[sys.executable, "-m", "pkg"]`` or ``["sharegpt4v", "push", ...]``). ``env`` adds/overrides
    variables on top of :func:`hub_env`. With ``check`` (default) a non-zero exit raises
    :class:`HubSubprocessError` with the exit code, stderr and the server's last requests.
    """
    argv = [sys.executable, "-c", code_or_argv] if isinstance(code_or_argv, str) else list(code_or_argv)
    full_env = hub_env(hub, **dict(env or {}))
    started = len(hub.requests)
    result = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        shown = " ".join(argv[:2]) + (" <code>" if isinstance(code_or_argv, str) else " " + " ".join(argv[2:]))
        recent = "\n".join(f"  {m} {p} -> {s}" for m, p, s in hub.requests[started:][-25:]) or "  (none)"
        stray = "\n".join(f"  {m} {p}" for m, p in hub.stray_requests) or "  (none)"
        raise HubSubprocessError(
            f"Client subprocess `{shown}` exited with {result.returncode}.\n--- stderr (tail) ---\n"
            f"{result.stderr[-6000:]}\n--- stdout (tail) ---\n{result.stdout[-2000:]}\n"
            f"--- last requests to the local hub ---\n{recent}\n--- blocked outbound requests ---\n{stray}",
            result,
        )
    return result


@contextlib.contextmanager
def local_hub(root: str | os.PathLike | None = None, **kwargs: Any) -> Iterator[LocalHub]:
    """``with local_hub() as hub:`` — a :class:`LocalHub` in ``root`` (a temporary folder removed on exit if not
    given)."""
    if root is not None:
        with LocalHub(root, **kwargs) as hub:
            yield hub
        return
    folder = tempfile.mkdtemp(prefix="local-hub-")
    try:
        with LocalHub(folder, **kwargs) as hub:
            yield hub
    finally:
        shutil.rmtree(folder, ignore_errors=True)
