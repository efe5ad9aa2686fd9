"""The local Hub server against huggingface_hub's own client calls (in this process, with an
explicit endpoint and cache folder): uploads, LFS, downloads, revisions, access, faults."""

import hashlib
import json
import os

import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session

from tests.hub.conftest import ORG


def _folder(tmp_path, weights: bytes, note: str = "hello"):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"width": 4}')
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "sub" / "note.txt").write_text(note)
    return folder


def _requests_since(local_hub, start: int, fragment: str, method: str | None = None) -> list:
    return [r for r in local_hub.server.request_log[start:] if fragment in r[1] and method in (None, r[0])]


def test_upload_download_uses_lfs_for_weights(local_hub, tmp_path, hub_cache):
    api, repo_id = local_hub.api(), local_hub.repo_id("lfs")
    assert api.whoami()["name"] == "hf-eff-tester"
    api.create_repo(repo_id)
    weights = os.urandom(5000)
    start = len(local_hub.server.request_log)
    commit = api.upload_folder(repo_id=repo_id, folder_path=_folder(tmp_path, weights))

    assert _requests_since(local_hub, start, ".git/info/lfs/objects/batch", "POST")
    assert len(_requests_since(local_hub, start, "/lfs-upload/", "PUT")) == 1  # only the binary file
    info = api.model_info(repo_id, files_metadata=True)
    assert info.sha == commit.oid
    siblings = {s.rfilename: s for s in info.siblings}
    assert sorted(siblings) == [".gitattributes", "config.json", "model.safetensors", "sub/note.txt"]
    assert siblings["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert siblings["config.json"].lfs is None

    path = hf_hub_download(repo_id, "model.safetensors", endpoint=local_hub.url, cache_dir=hub_cache,
                           token=local_hub.token)
    assert open(path, "rb").read() == weights
    metadata = api.get_hf_file_metadata(url=f"{local_hub.url}/{repo_id}/resolve/main/model.safetensors")
    assert metadata.commit_hash == commit.oid and metadata.etag == hashlib.sha256(weights).hexdigest()
    assert metadata.size == len(weights)
    tree = {e.path for e in api.list_repo_tree(repo_id, recursive=True)}
    assert tree == {".gitattributes", "config.json", "model.safetensors", "sub", "sub/note.txt"}
    assert [e.path for e in api.get_paths_info(repo_id, ["sub", "config.json", "absent"])] == ["sub", "config.json"]


def test_repush_updates_files_and_revision_pins_old_ones(local_hub, tmp_path, hub_cache):
    api, repo_id = local_hub.api(), local_hub.repo_id("revisions")
    api.create_repo(repo_id)
    old = api.upload_folder(repo_id=repo_id, folder_path=_folder(tmp_path, b"\0old", note="v1"))
    new = api.upload_folder(repo_id=repo_id, folder_path=_folder(tmp_path, b"\0new", note="v2"),
                            delete_patterns=["*.txt"])
    assert old.oid != new.oid

    def read(path, revision=None):
        return open(hf_hub_download(repo_id, path, revision=revision, endpoint=local_hub.url,
                                    cache_dir=hub_cache, token=local_hub.token), "rb").read()

    assert read("model.safetensors") == b"\0new" and read("sub/note.txt") == b"v2"
    assert read("model.safetensors", revision=old.oid) == b"\0old"
    assert read("sub/note.txt", revision=old.oid[:10]) == b"v1"  # a short sha pins too
    assert [c.commit_id for c in api.list_repo_commits(repo_id)][:2] == [new.oid, old.oid]
    api.create_branch(repo_id, branch="v1-branch", revision=old.oid)
    api.create_tag(repo_id, tag="v1.0", revision=old.oid)
    assert read("model.safetensors", revision="v1-branch") == b"\0old"
    assert read("model.safetensors", revision="v1.0") == b"\0old"
    refs = api.list_repo_refs(repo_id)
    assert {b.name for b in refs.branches} == {"main", "v1-branch"} and [t.name for t in refs.tags] == ["v1.0"]
    api.delete_branch(repo_id, branch="v1-branch")
    api.delete_tag(repo_id, tag="v1.0")
    refs = api.list_repo_refs(repo_id)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []
    api.delete_folder("sub", repo_id=repo_id)
    assert sorted(f.path for f in api.list_repo_tree(repo_id, recursive=True)) == [
        ".gitattributes", "config.json", "model.safetensors"]
    assert read("sub/note.txt", revision=new.oid) == b"v2"


def test_card_with_invalid_yaml_is_refused_before_upload(local_hub):
    api, repo_id = local_hub.api(), local_hub.repo_id("yaml")
    api.create_repo(repo_id)
    with pytest.raises(ValueError, match="Invalid metadata in README.md.\n- Invalid YAML metadata"):
        api.upload_file(path_or_fileobj=b"---\ntags: [unclosed\n---\n# card\n", path_in_repo="README.md",
                        repo_id=repo_id)
    assert [s.rfilename for s in api.model_info(repo_id).siblings] == [".gitattributes"]


def test_private_repo_refuses_requests_without_the_owners_token(local_hub, tmp_path, hub_cache):
    api, repo_id = local_hub.api(), local_hub.repo_id("private")
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="weights.txt", repo_id=repo_id)
    assert api.model_info(repo_id).private

    for token in (False, local_hub.other_token):
        with pytest.raises(RepositoryNotFoundError):
            local_hub.api(token=token).model_info(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(repo_id, "weights.txt", endpoint=local_hub.url, cache_dir=hub_cache, token=token)
    with pytest.raises(HfHubHTTPError):
        local_hub.api(token="hf_not_a_real_token").model_info(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        local_hub.api(token=local_hub.other_token).upload_file(
            path_or_fileobj=b"overwrite", path_in_repo="weights.txt", repo_id=repo_id)
    assert open(hf_hub_download(repo_id, "weights.txt", endpoint=local_hub.url, cache_dir=hub_cache,
                                token=local_hub.token), "rb").read() == b"secret"


def test_public_repo_refuses_writes_from_others_and_can_turn_private(local_hub):
    api, repo_id = local_hub.api(), local_hub.repo_id("public")
    api.create_repo(repo_id)
    assert local_hub.api(token=False).model_info(repo_id).id == repo_id
    with pytest.raises(HfHubHTTPError, match="403"):
        local_hub.api(token=local_hub.other_token).upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError, match="403"):
        local_hub.api(token=local_hub.other_token).create_repo(f"hf-eff-tester/{repo_id.split('/')[1]}-2")
    api.update_repo_settings(repo_id, private=True)
    with pytest.raises(RepositoryNotFoundError):
        local_hub.api(token=False).model_info(repo_id)


def test_a_read_token_reads_and_writes_nothing_and_whoami_says_its_role(local_hub):
    api, repo_id = local_hub.api(), local_hub.repo_id("read-token")
    api.create_repo(repo_id, private=True)
    reader = local_hub.api(token=local_hub.read_token)
    assert reader.model_info(repo_id).id == repo_id
    with pytest.raises(HfHubHTTPError, match="403"):
        reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError, match="403"):
        reader.create_repo(f"{repo_id}-2")
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    assert api.whoami()["auth"]["accessToken"]["role"] == "write"
    assert "fineGrained" in local_hub.api(token=local_hub.fine_grained_token).whoami()["auth"]["accessToken"]


def test_members_write_to_their_organisations_repos(local_hub):
    api, other = local_hub.api(), local_hub.api(token=local_hub.other_token)
    assert [org["name"] for org in api.whoami()["orgs"]] == [ORG] and other.whoami()["orgs"] == []
    repo_id = f"{ORG}/{local_hub.repo_id('org').split('/')[1]}"
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    assert "x.txt" in api.list_repo_files(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        other.model_info(repo_id)
    with pytest.raises(HfHubHTTPError, match="403"):
        other.create_repo(f"{repo_id}-2")


def test_whoami_fails_as_injected(local_hub, inject_fault):
    inject_fault("whoami", 404)
    with pytest.raises(HfHubHTTPError, match="404"):
        local_hub.api().whoami()
    assert local_hub.api().whoami()["name"] == "hf-eff-tester"


def _shards(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(3):
        (folder / f"shard-{i}.safetensors").write_bytes(os.urandom(3000 + i))
    (folder / "config.json").write_text("{}")
    return folder


def _assert_repo_holds(api, repo_id, folder):
    info = api.model_info(repo_id, files_metadata=True)
    remote = {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs}
    local = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.safetensors")}
    assert remote == local


def test_connection_dropped_mid_upload_is_retried_to_a_consistent_repo(local_hub, inject_fault, tmp_path):
    api, repo_id = local_hub.api(), local_hub.repo_id("drop")
    api.create_repo(repo_id)
    folder = _shards(tmp_path)
    inject_fault("lfs-upload", status=None, after=1)  # the 2nd upload's connection drops
    start = len(local_hub.server.request_log)
    api.upload_folder(repo_id=repo_id, folder_path=folder)
    assert len(_requests_since(local_hub, start, "/lfs-upload/", "PUT")) == 4  # one sent again
    _assert_repo_holds(api, repo_id, folder)


def test_failed_commit_leaves_the_repo_unchanged_and_the_retry_skips_uploaded_files(local_hub, inject_fault,
                                                                                    tmp_path):
    api, repo_id = local_hub.api(), local_hub.repo_id("commit-fault")
    api.create_repo(repo_id)
    before = api.model_info(repo_id).sha
    folder = _shards(tmp_path)
    inject_fault("commit", status=500)
    with pytest.raises(HfHubHTTPError, match="500"):
        api.upload_folder(repo_id=repo_id, folder_path=folder)
    after_failure = api.model_info(repo_id)
    assert after_failure.sha == before and [s.rfilename for s in after_failure.siblings] == [".gitattributes"]

    start = len(local_hub.server.request_log)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder)
    assert _requests_since(local_hub, start, "/lfs-upload/", "PUT") == []  # already stored
    assert api.model_info(repo_id).sha == commit.oid
    _assert_repo_holds(api, repo_id, folder)


def test_partial_lfs_upload_never_reaches_the_repo(local_hub):
    """An upload cut short (the body does not match its oid) is refused, and a commit that
    names the object is rejected: the repo never points at missing content."""
    repo_id = local_hub.repo_id("partial")
    api = local_hub.api()
    api.create_repo(repo_id)
    data = b"\0" + os.urandom(2000)
    oid = hashlib.sha256(data).hexdigest()
    auth = {"Authorization": f"Bearer {local_hub.token}"}
    batch = get_session().post(
        f"{local_hub.url}/{repo_id}.git/info/lfs/objects/batch", headers=auth,
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]},
    ).json()
    upload_url = batch["objects"][0]["actions"]["upload"]["href"]
    assert get_session().put(upload_url, content=data[:1000]).status_code == 400
    commit = "\n".join(json.dumps(line) for line in [
        {"key": "header", "value": {"summary": "x"}},
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": oid, "size": len(data)}},
    ])
    response = get_session().post(f"{local_hub.url}/api/models/{repo_id}/commit/main", content=commit.encode(),
                                  headers={**auth, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 422 and "w.safetensors" in response.text
    assert [s.rfilename for s in api.model_info(repo_id).siblings] == [".gitattributes"]


def test_missing_file_revision_or_repo_give_clear_errors(local_hub, hub_cache):
    api, repo_id = local_hub.api(), local_hub.repo_id("missing")
    api.create_repo(repo_id)
    kwargs = {"endpoint": local_hub.url, "cache_dir": hub_cache, "token": local_hub.token}
    with pytest.raises(EntryNotFoundError, match="adapter_model.safetensors"):
        hf_hub_download(repo_id, "adapter_model.safetensors", **kwargs)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", revision="no-such-branch", **kwargs)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("hf-eff-tester/never-created", "config.json", **kwargs)
    api.delete_repo(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_id)


def test_lfs_batch_download_hands_out_signed_urls(local_hub):
    api, repo_id = local_hub.api(), local_hub.repo_id("lfs-download")
    api.create_repo(repo_id)
    data = b"\0" + os.urandom(100)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.safetensors", repo_id=repo_id)
    oid = hashlib.sha256(data).hexdigest()
    response = get_session().post(
        f"{local_hub.url}/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": "download", "objects": [{"oid": oid, "size": len(data)}]},
        headers={"Authorization": f"Bearer {local_hub.token}"},
    )
    href = response.json()["objects"][0]["actions"]["download"]["href"]
    assert get_session().get(href).content == data
    assert get_session().get(href.split("?")[0]).status_code == 403  # unsigned
