"""A local Hugging Face Hub on 127.0.0.1: the endpoints that huggingface_hub's downloads call.

Serves checkpoint folders as model repositories, each revision (branch or tag) pointing to a
commit with the files of one folder:

- ``GET /api/models/{repo}/revision/{revision}``: the repository's info with the commit ``sha``
  (``HfApi.repo_info``, the first call of ``snapshot_download``);
- ``GET /api/models/{repo}/tree/{commit}``: the file list (``HfApi.list_repo_tree``);
- ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``: the file, with ``X-Repo-Commit``, ``ETag``
  and ``Content-Length`` (``hf_hub_download``'s metadata, then its download).

Unknown repositories, revisions and files answer 404 with the ``X-Error-Code`` the Hub sends
(RepoNotFound, RevisionNotFound, EntryNotFound). Every request path is recorded in `requests`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class LocalHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, str]] = {}  # repo -> revision name -> commit
        self.commits: dict[str, Path] = {}  # commit -> folder
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def add(self, repo: str, folder: Path, revisions: tuple[str, ...] = ("main",)) -> str:
        """Publish `folder` as a commit of `repo` that `revisions` point to; return the commit sha."""
        commit = hashlib.sha1(f"{repo}:{folder}".encode()).hexdigest()
        self.commits[commit] = Path(folder)
        for rev in revisions:
            self.repos.setdefault(repo, {})[rev] = commit
        return commit

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> LocalHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 (http.server's names)
                hub._answer(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, body=True)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- the endpoints ------------------------------------------------------------------------
    def _commit(self, repo: str, revision: str) -> tuple[str | None, str | None]:
        """(commit, None) or (None, the X-Error-Code)."""
        if repo not in self.repos:
            return None, "RepoNotFound"
        if revision in self.commits and revision in self.repos[repo].values():
            return revision, None
        if revision in self.repos[repo]:
            return self.repos[repo][revision], None
        return None, "RevisionNotFound"

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo, kind, revision = "/".join(parts[2:4]), parts[4], parts[5]
            commit, error = self._commit(repo, revision)
            if error:
                return self._error(handler, error)
            folder = self.commits[commit]
            files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            if kind == "revision":
                data = {"id": repo, "modelId": repo, "sha": commit, "private": False,
                        "siblings": [{"rfilename": f} for f in files]}
            else:
                data = [{"type": "file", "path": f, "size": (folder / f).stat().st_size,
                         "oid": hashlib.sha1((folder / f).read_bytes()).hexdigest()} for f in files]
            return self._send(handler, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            commit, error = self._commit(repo, revision)
            if error:
                return self._error(handler, error)
            file = self.commits[commit] / name
            if not file.is_file():
                return self._error(handler, "EntryNotFound", commit)
            data = file.read_bytes()
            headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "Content-Type": "application/octet-stream"}
            return self._send(handler, data, headers, body)
        return self._error(handler, "RepoNotFound")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, data: bytes, headers: dict[str, str], body: bool) -> None:
        handler.send_response(200)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    @staticmethod
    def _error(handler: BaseHTTPRequestHandler, code: str, commit: str | None = None) -> None:
        data = json.dumps({"error": code}).encode()
        handler.send_response(404)
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", code)
        if commit:
            handler.send_header("X-Repo-Commit", commit)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
