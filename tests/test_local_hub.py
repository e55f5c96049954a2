"""The local Hub endpoint as a small model store, driven by the real huggingface_hub client (in a subprocess, since
the client reads HF_ENDPOINT when imported): data kept across restarts, bodies always consumed, tokens, refused
pull requests, delete_repo, list_models, get_paths_info."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import textwrap

import pytest
from typed_bert.hub.local_hub import LocalHubServer

TOKEN = "hf_store_token"

CLIENT = """
import json, sys, tempfile
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
api = HfApi()
report = {}
def attempt(name, call):
    try:
        report[name] = call()
    except HfHubHTTPError as error:
        report[name] = f"HTTP {error.response.status_code}: {error.response.headers.get('X-Error-Message')}"
"""


def client(server, script: str, token: str | None = TOKEN) -> dict:
    env = {**os.environ, "HF_ENDPOINT": server.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    env["HF_HOME"] = str(server.state.storage.parent / "hf-home")
    source = CLIENT + textwrap.dedent(script) + "\nprint(json.dumps(report, default=str))\n"
    result = subprocess.run([sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def storage(tmp_path):
    return tmp_path / "store"


def test_repos_commits_branches_and_tags_survive_a_restart(tmp_path, storage):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text('{"a": 1}')
    (tmp_path / "folder" / "model.safetensors").write_bytes(b"\0" * 2048)
    server = LocalHubServer(storage, token=TOKEN).start()
    first = client(
        server,
        f"""
        api.create_repo("org/kept", private=True)
        commit = api.upload_folder(repo_id="org/kept", folder_path={str(tmp_path / "folder")!r})
        api.create_branch("org/kept", branch="dev")
        api.create_tag("org/kept", tag="v1", revision=commit.oid)
        report["commit"] = commit.oid
        """,
    )
    server.stop()

    server = LocalHubServer(storage, token=TOKEN).start()  # the same storage, a new process state
    after = client(
        server,
        """
        refs = api.list_repo_refs("org/kept")
        report["branches"] = sorted(b.name for b in refs.branches)
        report["tags"] = {t.name: t.target_commit for t in refs.tags}
        report["files"] = sorted(api.list_repo_files("org/kept", revision="v1"))
        report["config"] = Path(hf_hub_download("org/kept", "config.json", revision="v1")).read_text()
        report["commits"] = len(api.list_repo_commits("org/kept"))
        """,
    )
    server.stop()
    assert after["branches"] == ["dev", "main"] and after["tags"] == {"v1": first["commit"]}
    assert after["files"] == [".gitattributes", "config.json", "model.safetensors"] or after["files"] == [
        "config.json",
        "model.safetensors",
    ]
    assert after["config"] == '{"a": 1}' and after["commits"] == 2


def test_an_interrupted_state_write_leaves_the_previous_state(storage):
    server = LocalHubServer(storage).start()
    client(server, 'api.create_repo("org/a")', token=None)
    server.stop()
    (storage / "repos.json.partial").write_text('{"org/half-writ')  # a write that died before its rename
    server = LocalHubServer(storage).start()
    report = client(server, 'report["models"] = [m.id for m in api.list_models()]', token=None)
    server.stop()
    assert report["models"] == ["org/a"]


def test_token_guards_writes_and_private_reads(storage):
    server = LocalHubServer(storage, token=TOKEN).start()
    client(server, 'api.create_repo("org/private", private=True); api.create_repo("org/public")')
    anonymous = client(
        server,
        """
        attempt("create", lambda: api.create_repo("org/other"))
        attempt("private_read", lambda: api.list_repo_files("org/private"))
        attempt("public_read", lambda: api.list_repo_files("org/public"))
        attempt("listed", lambda: [m.id for m in api.list_models()])
        """,
        token=None,
    )
    wrong = client(server, 'attempt("create", lambda: api.create_repo("org/other"))', token="hf_wrong")
    server.stop()
    assert anonymous["create"].startswith("HTTP 401: Invalid credentials")
    assert anonymous["private_read"].startswith("HTTP 401")
    assert anonymous["public_read"] == [] or anonymous["public_read"] == [".gitattributes"]
    assert anonymous["listed"] == ["org/public"]
    assert wrong["create"].startswith("HTTP 401")


def test_pull_requests_are_refused_clearly_and_repos_can_be_deleted_and_listed(tmp_path, storage):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.txt").write_text("a")
    server = LocalHubServer(storage, token=TOKEN).start()
    report = client(
        server,
        f"""
        api.create_repo("org/a"); api.create_repo("org/b")
        api.upload_folder(repo_id="org/a", folder_path={str(tmp_path / "f")!r})
        attempt("pr", lambda: api.upload_folder(repo_id="org/a", folder_path={str(tmp_path / "f")!r}, create_pr=True))
        report["paths"] = [(p.path, type(p).__name__) for p in api.get_paths_info("org/a", ["a.txt", "nope.txt"])]
        report["before"] = sorted(m.id for m in api.list_models(author="org"))
        api.delete_repo("org/b")
        report["after"] = sorted(m.id for m in api.list_models())
        attempt("deleted", lambda: api.list_repo_files("org/b"))
        """,
    )
    server.stop()
    assert report["pr"].startswith("HTTP 400: The local Hub does not support pull requests")
    assert report["paths"] == [["a.txt", "RepoFile"]]
    assert report["before"] == ["org/a", "org/b"] and report["after"] == ["org/a"]
    assert report["deleted"].startswith("HTTP 404")


def test_a_refused_post_does_not_poison_the_kept_alive_connection(storage):
    server = LocalHubServer(storage, token=TOKEN).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
    body = json.dumps({"name": "x", "organization": "org", "padding": "p" * 5000})
    connection.request("POST", "/api/repos/create", body=body, headers={"Content-Type": "application/json"})
    refused = connection.getresponse()
    refused.read()
    connection.request("GET", "/api/models")  # the same connection
    listed = connection.getresponse()
    answer = json.loads(listed.read())
    connection.request("DELETE", "/api/repos/delete", body=body, headers={"Authorization": f"Bearer {TOKEN}"})
    deleted = connection.getresponse()
    deleted.read()
    connection.close()
    server.stop()
    assert refused.status == 401 and listed.status == 200 and answer == []
    assert deleted.status == 404  # understood as a delete of a repo that does not exist, not a garbled request
