"""A small HTTP endpoint that speaks the part of the Hugging Face Hub protocol that `huggingface_hub` and
`transformers` use to create a repo, commit a folder (regular files inline, large files through git-LFS "basic"
transfer), and download it again. It is demo and test infrastructure, where the real Hub cannot be reached, not a
user command (`typed-bert` does not list it):

    python -m typed_bert.hub.local_hub --storage /tmp/hub --port 8765 [--token T]   # HF_ENDPOINT=http://127.0.0.1:8765

Clients must set `HF_HUB_DISABLE_XET=1` (before importing huggingface_hub) so that large files go through LFS.
Commits are atomic: a branch moves to a new commit only after every file of it is stored. Repos, commits, branches
and tags are kept in `--storage` across restarts; `--token T` guards writes and private reads.
`drop_lfs_uploads=N` makes the server drop the connection in the middle of the next N LFS uploads, to test
interrupted pushes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from typed_bert.command_line import command_parser, local_path, run

EXAMPLE = "python -m typed_bert.hub.local_hub --storage /tmp/typed-bert-hub --port 8765"
LFS_THRESHOLD = 1_000_000  # bytes; larger files, and all weights, go through LFS as on the real Hub
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx", ".png")
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
REV = r"(?P<rev>[^/]+)"


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubState:
    """Repos with their branches, tags and commits, kept in `storage/repos.json` (rewritten atomically after every
    change, so a restart finds every repo and an interrupted write leaves the previous state); file contents in
    `storage/objects/`, addressed by sha256."""

    def __init__(self, storage: Path, token: str | None = None) -> None:
        self.storage = storage
        (storage / "objects").mkdir(parents=True, exist_ok=True)
        self.index = storage / "repos.json"
        self.lock = threading.Lock()
        # repo id -> {"private", "branches": {name: commit id}, "tags": {name: commit id}, "commits": {id: commit}}
        self.repos: dict[str, dict] = json.loads(self.index.read_text()) if self.index.is_file() else {}
        self.token = token
        self.drop_lfs_uploads = 0

    def signature(self, oid: str) -> str:
        """What signs the LFS transfer URLs of `oid`: the PUT and verify requests carry no credentials."""
        return hashlib.sha256(f"{self.token}:{self.storage}:{oid}".encode()).hexdigest()

    def save(self) -> None:
        """Write the repos to disk; call with the lock held. `os.replace` makes the new state appear at once."""
        partial = self.index.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.repos))
        os.replace(partial, self.index)

    def object_path(self, sha256: str) -> Path:
        return self.storage / "objects" / sha256

    def store(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.object_path(sha256)
        if not path.exists():
            partial = path.with_suffix(".partial")
            partial.write_bytes(data)
            partial.rename(path)
        return sha256

    def create_repo(self, repo_id: str, private: bool) -> bool:
        with self.lock:
            if repo_id in self.repos:
                return False
            initial = self._new_commit(repo_id, None, {}, "initial commit", "")
            self.repos[repo_id] = {
                "private": private,
                "branches": {"main": initial["id"]},
                "tags": {},
                "commits": {initial["id"]: initial},
            }
            self.save()
            return True

    def delete_repo(self, repo_id: str) -> bool:
        with self.lock:
            if self.repos.pop(repo_id, None) is None:
                return False
            self.save()
            return True

    def _new_commit(self, repo_id: str, parent: str | None, files: dict, title: str, message: str) -> dict:
        created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        digest = json.dumps([repo_id, parent, sorted(files.items()), title, message, time.time_ns()]).encode()
        return {
            "id": hashlib.sha1(digest).hexdigest(),
            "parent": parent,
            "files": files,
            "title": title,
            "message": message,
            "date": created,
        }

    def resolve(self, repo_id: str, revision: str) -> dict | None:
        """The commit a branch, tag or commit id names, or None."""
        repo = self.repos[repo_id]
        commit_id = repo["branches"].get(revision) or repo["tags"].get(revision) or revision
        return repo["commits"].get(commit_id)

    def history(self, repo_id: str, commit: dict) -> list[dict]:
        """`commit` and its ancestors, newest first."""
        commits, history = self.repos[repo_id]["commits"], []
        while commit is not None:
            history.append(commit)
            commit = commits.get(commit["parent"])
        return history

    def set_ref(self, repo_id: str, kind: str, name: str, commit: dict) -> bool:
        """Create the branch or tag `name` at `commit`; False if it exists."""
        with self.lock:
            refs = self.repos[repo_id][kind]
            if name in refs:
                return False
            refs[name] = commit["id"]
            self.save()
            return True

    def delete_ref(self, repo_id: str, kind: str, name: str) -> bool:
        """Delete the branch or tag `name` (never `main`); False if there is none."""
        with self.lock:
            refs = self.repos[repo_id][kind]
            if name not in refs or (kind == "branches" and name == "main"):
                return False
            del refs[name]
            self.save()
            return True

    def commit(self, repo_id: str, branch: str, operations: list[dict], header: dict) -> dict:
        """Apply `operations` (already stored) on top of `branch` as one new commit; raise ValueError if invalid."""
        with self.lock:
            repo = self.repos[repo_id]
            head = repo["commits"].get(repo["branches"].get(branch, ""))
            if head is None:
                raise LookupError(f"Revision {branch} does not exist")
            parent = header.get("parentCommit")
            if parent and parent != head["id"]:
                raise ValueError(f"parentCommit {parent} is not the head {head['id']} of {branch}")
            files = dict(head["files"])
            for operation in operations:
                kind, value = operation["key"], operation["value"]
                if kind in ("file", "lfsFile"):
                    files[value["path"]] = value["entry"]
                elif kind == "deletedFile":
                    files.pop(value["path"], None)
                elif kind == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {path: entry for path, entry in files.items() if not path.startswith(prefix)}
            commit = self._new_commit(
                repo_id, head["id"], files, header.get("summary", ""), header.get("description", "")
            )
            repo["commits"][commit["id"]] = commit
            repo["branches"][branch] = commit["id"]
            self.save()
            return commit


class HubHandler(BaseHTTPRequestHandler):
    """Routes the Hub API requests to `HubState`; unknown routes answer 404 with the Hub's error headers."""

    server: LocalHubServer
    protocol_version = "HTTP/1.1"
    _body_bytes: bytes | None = None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        if self.server.verbose:
            super().log_message(format, *args)

    # -- plumbing ------------------------------------------------------------------------------------------------
    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self) -> bytes:
        """The request body, read once; whatever a handler leaves unread is drained after it (see `_route`), so a
        kept-alive connection's next request never starts in the middle of this one's body."""
        if self._body_bytes is None:
            self._body_bytes = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._body_bytes

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(value).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json({"error": message}, status, headers)

    def _authorized(self) -> bool:
        """With a server token, whether the request carries it (`Authorization: Bearer TOKEN`)."""
        return self.state.token is None or self.headers.get("Authorization", "") == f"Bearer {self.state.token}"

    def _repo_or_404(self, repo_id: str) -> dict | None:
        """The repo, or None after answering 404 (absent) or 401 (private, and the request lacks the token)."""
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
            return None
        if repo["private"] and not self._authorized():
            self._error(401, f"Repository {repo_id} is private: pass the local Hub's token (HF_TOKEN)", "RepoNotFound")
            return None
        return repo

    def _commit_or_404(self, repo_id: str, revision: str) -> dict | None:
        if self._repo_or_404(repo_id) is None:
            return None
        commit = self.state.resolve(repo_id, unquote(revision))
        if commit is None:
            self._error(404, f"Revision {revision} not found in {repo_id}", "RevisionNotFound")
        return commit

    def _route(self, routes: list[tuple[str, object]], write: bool = False) -> None:
        """Call the handler whose pattern matches the path; writes need the server's token when it has one."""
        self._body_bytes = None
        path = urlparse(self.path).path
        try:
            if write and not self._authorized():
                self._error(401, "Invalid credentials: writes to this local Hub need its token (HF_TOKEN)")
                return
            for pattern, handler in routes:
                match = re.fullmatch(pattern, path)
                if match:
                    handler(**match.groupdict())
                    return
            self._error(404, f"{self.command} {path} is not served by the local Hub", "EntryNotFound")
        finally:
            if not self.close_connection:
                self._body()  # drain what the handler did not read

    # -- HTTP verbs ----------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._route(
            [
                (r"/api/whoami-v2", self.whoami),
                (rf"/api/models/{REPO}", lambda repo: self.model_info(repo, "main")),
                (rf"/api/models/{REPO}/revision/{REV}", self.model_info),
                (rf"/api/models/{REPO}/tree/{REV}(?:/(?P<path>.*))?", self.tree),
                (rf"/api/models/{REPO}/commits/{REV}", self.commits),
                (rf"/api/models/{REPO}/refs", self.refs),
                (r"/api/models", self.list_models),
                (rf"/{REPO}/resolve/{REV}/(?P<path>.+)", self.resolve_file),
            ]
        )

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        # POSTs that read (or that a signed URL authorises) need no token.
        unguarded = [
            (rf"/api/models/{REPO}/paths-info/{REV}", self.paths_info),
            (r"/api/validate-yaml", self.validate_yaml),
            (r"/lfs/verify/(?P<oid>[0-9a-f]{64})", self.lfs_verify),
        ]
        if any(re.fullmatch(pattern, path) for pattern, _ in unguarded):
            self._route(unguarded)
            return
        self._route(
            [
                (r"/api/repos/create", self.create_repo),
                (rf"/api/models/{REPO}/preupload/{REV}", self.preupload),
                (rf"/api/models/{REPO}/commit/{REV}", self.commit),
                (rf"/api/models/{REPO}/tag/{REV}", self.create_tag),
                (rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", self.create_branch),
                (rf"/{REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
            ],
            write=True,
        )

    def do_PUT(self) -> None:
        self._route([(r"/lfs/upload/(?P<oid>[0-9a-f]{64})", self.lfs_upload)])  # authorised by its signed URL

    def do_DELETE(self) -> None:
        self._route(
            [
                (r"/api/repos/delete", self.delete_repo),
                (rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", self.delete_branch),
            ],
            write=True,
        )

    # -- API ----------------------------------------------------------------------------------------------------
    def whoami(self) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._error(401, "Invalid credentials in Authorization header")
            return
        self._json({"type": "user", "name": "local-user", "auth": {"accessToken": {"role": "write"}}, "orgs": []})

    def create_repo(self) -> None:
        request = json.loads(self._body() or b"{}")
        if request.get("type", "model") not in (None, "model"):
            self._error(400, "The local Hub serves model repos only")
            return
        namespace = request.get("organization") or "local-user"
        repo_id = f"{namespace}/{request['name']}"
        private = bool(request.get("private")) or request.get("visibility") == "private"  # huggingface_hub 0.x, 1.x+
        if not self.state.create_repo(repo_id, private):
            message = f"You already created this model repo: {repo_id}"
            self._json({"error": message, "url": f"{self.endpoint}/{repo_id}"}, 409, {"X-Error-Message": message})
            return
        self._json({"url": f"{self.endpoint}/{repo_id}", "name": repo_id, "id": repo_id})

    def delete_repo(self) -> None:
        request = json.loads(self._body() or b"{}")
        repo_id = f"{request.get('organization') or 'local-user'}/{request['name']}"
        if not self.state.delete_repo(repo_id):
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
            return
        self._json({})

    def list_models(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        author, search = query.get("author", [None])[0], query.get("search", [""])[0]
        models = []
        for repo_id, repo in sorted(self.state.repos.items()):
            if (repo["private"] and not self._authorized()) or (author and not repo_id.startswith(f"{author}/")):
                continue
            if search.lower() in repo_id.lower():
                head = repo["commits"][repo["branches"]["main"]]
                models.append({"id": repo_id, "modelId": repo_id, "private": repo["private"], "sha": head["id"]})
        self._json(models)

    def paths_info(self, repo: str, rev: str) -> None:
        commit = self._commit_or_404(repo, rev)
        if commit is None:
            return
        body = self._body().decode()
        paths = json.loads(body)["paths"] if body.startswith("{") else parse_qs(body).get("paths", [])
        entries = []
        for path in paths:
            path = path.strip("/")
            if path in commit["files"]:
                entries.append(self._file_entry(path, commit["files"][path]))
            elif any(name.startswith(path + "/") for name in commit["files"]):
                entries.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})
        self._json(entries)

    @staticmethod
    def _file_entry(path: str, entry: dict) -> dict:
        item = {"type": "file", "path": path, "size": entry["size"], "oid": entry["blob_sha1"]}
        if entry["lfs"]:
            item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": 134}
        return item

    def validate_yaml(self) -> None:
        """Check a README.md's front matter as the Hub does before an upload: it must be a YAML mapping."""
        import yaml

        content = json.loads(self._body() or b"{}").get("content", "")
        match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", content, re.DOTALL)
        if match is None:
            self._json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]})
            return
        try:
            metadata = yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            self._json({"errors": [{"message": f"invalid YAML: {error}"}], "warnings": []}, status=400)
            return
        if not isinstance(metadata, dict):
            self._json({"errors": [{"message": "the metadata must be a YAML mapping"}], "warnings": []}, status=400)
            return
        self._json({"errors": [], "warnings": []})

    def model_info(self, repo: str, rev: str) -> None:
        commit = self._commit_or_404(repo, rev)
        if commit is None:
            return
        self._json(
            {
                "id": repo,
                "modelId": repo,
                "sha": commit["id"],
                "private": self.state.repos[repo]["private"],
                "lastModified": commit["date"],
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(commit["files"])],
            }
        )

    def tree(self, repo: str, rev: str, path: str | None) -> None:
        commit = self._commit_or_404(repo, rev)
        if commit is None:
            return
        prefix = (path or "").strip("/")
        recursive = parse_qs(urlparse(self.path).query).get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for file_path, entry in sorted(commit["files"].items()):
            if prefix and not file_path.startswith(prefix + "/"):
                continue
            rest = file_path[len(prefix) + 1 :] if prefix else file_path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(filter(None, [prefix, *parts[:depth]]))
                if (recursive or depth == 1) and folder not in folders:
                    folders.add(folder)
                    entries.append(
                        {
                            "type": "directory",
                            "path": folder,
                            "oid": hashlib.sha1(folder.encode()).hexdigest(),
                            "size": 0,
                        }
                    )
            if recursive or len(parts) == 1:
                entries.append(self._file_entry(file_path, entry))
        if prefix and not entries:
            self._error(404, f"{prefix} not found at {rev}", "EntryNotFound")
            return
        self._json(entries)

    def commits(self, repo: str, rev: str) -> None:
        commit = self._commit_or_404(repo, rev)
        if commit is None:
            return
        fields = ("id", "title", "message", "date")
        history = self.state.history(repo, commit)
        self._json([{**{key: c[key] for key in fields}, "authors": [{"user": "local-user"}]} for c in history])

    def refs(self, repo: str) -> None:
        state = self._repo_or_404(repo)
        if state is None:
            return

        def refs_of(kind: str, table: dict) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c} for n, c in table.items()]

        self._json(
            {"branches": refs_of("heads", state["branches"]), "tags": refs_of("tags", state["tags"]), "converts": []}
        )

    def create_tag(self, repo: str, rev: str) -> None:
        commit = self._commit_or_404(repo, rev)
        if commit is None:
            return
        tag = json.loads(self._body() or b"{}")["tag"]
        if not self.state.set_ref(repo, "tags", tag, commit):
            self._error(409, f"Tag {tag} already exists")
            return
        self._json({"name": tag, "targetCommit": commit["id"]})

    def create_branch(self, repo: str, branch: str) -> None:
        if self._repo_or_404(repo) is None:
            return
        request = json.loads(self._body() or b"{}")
        start = self.state.resolve(repo, request.get("startingPoint") or "main")
        if start is None:
            self._error(404, f"Revision {request.get('startingPoint')} not found in {repo}", "RevisionNotFound")
            return
        if not self.state.set_ref(repo, "branches", unquote(branch), start):
            self._error(409, f"Branch {branch} already exists")
            return
        self._json({"name": branch})

    def delete_branch(self, repo: str, branch: str) -> None:
        if self._repo_or_404(repo) is None:
            return
        if not self.state.delete_ref(repo, "branches", unquote(branch)):
            self._error(404, f"Branch {branch} not found in {repo}", "RevisionNotFound")
            return
        self._json({})

    def preupload(self, repo: str, rev: str) -> None:
        if self._repo_or_404(repo) is None:
            return
        files = json.loads(self._body())["files"]
        self._json(
            {
                "files": [
                    {
                        "path": item["path"],
                        "uploadMode": "lfs"
                        if item["size"] > LFS_THRESHOLD or item["path"].endswith(LFS_SUFFIXES)
                        else "regular",
                        "shouldIgnore": False,
                    }
                    for item in files
                ]
            }
        )

    def lfs_batch(self, repo: str) -> None:
        if self._repo_or_404(repo) is None:
            return
        request = json.loads(self._body())
        objects = []
        for item in request["objects"]:
            oid, size = item["oid"], item["size"]
            answer = {"oid": oid, "size": size, "authenticated": True}
            if not self.state.object_path(oid).exists():  # signed URLs, as the Hub's storage gives
                signed = f"{oid}?signature={self.state.signature(oid)}"
                answer["actions"] = {
                    "upload": {"href": f"{self.endpoint}/lfs/upload/{signed}", "header": {}},
                    "verify": {"href": f"{self.endpoint}/lfs/verify/{signed}", "header": {}},
                }
            objects.append(answer)
        self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _signed(self, oid: str) -> bool:
        """Whether the URL carries the signature `lfs_batch` gave for `oid` (answers 401 if not)."""
        if parse_qs(urlparse(self.path).query).get("signature", [""])[0] == self.state.signature(oid):
            return True
        self._error(401, f"The transfer URL of {oid} is not signed by this local Hub")
        return False

    def lfs_upload(self, oid: str) -> None:
        if not self._signed(oid):
            return
        length = int(self.headers.get("Content-Length") or 0)
        with self.state.lock:
            drop = self.state.drop_lfs_uploads > 0
            self.state.drop_lfs_uploads -= drop
        if drop:  # simulate a network failure: read half the bytes, then close without answering
            self.rfile.read(length // 2)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            self._error(400, f"Uploaded bytes do not hash to {oid}")
            return
        self.state.store(data)
        self._send(200)

    def lfs_verify(self, oid: str) -> None:
        if not self._signed(oid):
            return
        if not self.state.object_path(oid).exists():
            self._error(404, f"LFS object {oid} was not uploaded")
            return
        self._json({"message": "verified"})

    def commit(self, repo: str, rev: str) -> None:
        if self._repo_or_404(repo) is None:
            return
        if parse_qs(urlparse(self.path).query).get("create_pr", ["0"])[0] in ("1", "true", "True"):
            self._error(
                400,
                "The local Hub does not support pull requests (create_pr=True); commit to a branch instead "
                "(revision='my-branch', created with create_branch) and tag it.",
            )
            return
        header, operations = {}, []
        try:
            for line in self._body().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    header = value
                elif key == "file":
                    data = base64.b64decode(value["content"])
                    sha256 = self.state.store(data)
                    value["entry"] = {
                        "sha256": sha256,
                        "size": len(data),
                        "blob_sha1": _git_blob_sha1(data),
                        "lfs": False,
                    }
                elif key == "lfsFile":
                    path = self.state.object_path(value["oid"])
                    if not path.exists():
                        raise ValueError(f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    value["entry"] = {
                        "sha256": value["oid"],
                        "size": value["size"],
                        "blob_sha1": _git_blob_sha1(_lfs_pointer(value["oid"], value["size"])),
                        "lfs": True,
                    }
                operations.append({"key": key, "value": value})
            commit = self.state.commit(repo, unquote(rev), operations, header)
        except LookupError as error:
            self._error(404, str(error), "RevisionNotFound")
            return
        except (ValueError, KeyError) as error:
            self._error(400, f"Invalid commit: {error}")
            return
        self._json(
            {
                "commitOid": commit["id"],
                "commitUrl": f"{self.endpoint}/{repo}/commit/{commit['id']}",
                "pullRequestUrl": None,
            }
        )

    def resolve_file(self, repo: str, rev: str, path: str) -> None:
        commit = self._commit_or_404(repo, rev)
        if commit is None:
            return
        entry = commit["files"].get(unquote(path))
        if entry is None:
            self._error(404, f"Entry {path} not found in {repo} at {rev}", "EntryNotFound")
            return
        data_path = self.state.object_path(entry["sha256"])
        size = entry["size"]
        headers = {"X-Repo-Commit": commit["id"], "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update(
                {"ETag": f'"{entry["sha256"]}"', "X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(size)}
            )
        else:
            headers["ETag"] = f'"{entry["blob_sha1"]}"'
        start, end = 0, size - 1
        status = HTTPStatus.OK
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(end, int(match.group(2))) if match.group(2) else end
            status = HTTPStatus.PARTIAL_CONTENT
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if self.command == "HEAD":
            self.send_response(status)
            self.send_header("Content-Length", str(end - start + 1))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            return
        with data_path.open("rb") as handle:
            handle.seek(start)
            body = handle.read(end - start + 1)
        self._send(status, body, headers, content_type="application/octet-stream")


def _lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


class LocalHubServer(ThreadingHTTPServer):
    """`LocalHubServer(storage).start()` serves on 127.0.0.1 in a daemon thread; `.endpoint` is its URL."""

    daemon_threads = True

    def __init__(self, storage: str | Path, port: int = 0, verbose: bool = False, token: str | None = None) -> None:
        super().__init__(("127.0.0.1", port), HubHandler)
        self.state = HubState(Path(storage), token)
        self.verbose = verbose
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> LocalHubServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--storage", required=True, type=local_path, help="folder for the uploaded files")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--token", default=None, help="require this token (Authorization: Bearer) for writes and private reads"
    )
    args = parser.parse_args(argv)
    server = LocalHubServer(args.storage, args.port, args.verbose, args.token)
    print(f"local Hub at {server.endpoint}  (export HF_ENDPOINT={server.endpoint} HF_HUB_DISABLE_XET=1)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    run(main)
