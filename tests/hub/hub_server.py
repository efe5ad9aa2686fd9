"""A small, in-memory, Hub-compatible HTTP server for the tests.

It implements only the endpoints that ``huggingface_hub`` 2.4 and ``datasets`` 5.2 use for
the round trips tested here (with ``HF_HUB_DISABLE_XET=1``): whoami, repo create / delete /
info (with siblings), preupload, NDJSON commits, the git-LFS batch API (basic transfer,
uploads and downloads, pre-signed URLs), ``resolve`` downloads with ETag / X-Repo-Commit
headers (LFS files redirect like the real Hub's CDN), tree and paths-info listings, refs,
commit history, branches and tags, and YAML validation. It is not a Hub: no git, no PRs,
no Xet, no Spaces; organisations are only names with members.

Access: every repo belongs to its namespace, a user or an organisation. Reads of a private repo, and all
writes, need a Bearer token of that user or of a member; anything else gets the Hub's 401 ``RepoNotFound``
answer. A token's role ("write" unless given) is what whoami reports; a "read" token writes nothing.

Faults for the tests: ``HubServer.inject_fault(kind, status=None, after=0)`` makes a request of
a kind ("commit", "lfs-upload", "whoami" or "repo-info", a repo's GET /api/<type>s/<id>) fail with ``status`` or, with
``status=None``, drop the connection after reading the request, as a crashed upload would.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# The suffixes of the Hub's default .gitattributes; binary samples and big files go to LFS too.
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".npy", ".npz", ".pkl",
    ".ply", ".png", ".jpg", ".jpeg", ".parquet", ".arrow", ".gz", ".zip", ".tar", ".msgpack",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int
    lfs: bool
    git_oid: str  # like git: an LFS file's blob is its pointer file

    @classmethod
    def of(cls, data: bytes, lfs: bool) -> FileEntry:
        sha256 = hashlib.sha256(data).hexdigest()
        blob = lfs_pointer(sha256, len(data)) if lfs else data
        return cls(sha256, len(data), lfs, git_blob_sha1(blob))


@dataclass
class Commit:
    sha: str
    parent: str | None
    tree: dict[str, FileEntry]
    title: str
    message: str
    author: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_objects: set[str] = field(default_factory=set)

    @property
    def owner(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> str | None:
        """A branch, a tag, a full commit sha or a prefix of at least 7 hex digits."""
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision in self.commits:
            return revision
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [sha for sha in self.commits if sha.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        return None


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class _DropConnection(Exception):
    pass


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tokens: dict[str, str], host: str = "127.0.0.1", port: int = 0,
                 roles: dict[str, str] | None = None, orgs: dict[str, list[str] | dict[str, str | None]] | None = None):
        """tokens maps a Bearer token to its user name, roles a token to its role ("read", "write" or
        "fineGrained"; default "write") and orgs an organisation's name to its members: a list (each a "write"
        member) or a dict of each member's role in it ("admin", "write", "contributor" or "read": a "read" member
        writes nothing there; None: whoami leaves the role out, as an older Hub would)."""
        super().__init__((host, port), _Handler)
        self.hub = self
        # LFS content moves through a second origin, like the Hub's pre-signed storage URLs:
        # huggingface_hub does not follow (nor send its token to) redirects that leave the Hub.
        self.cdn = ThreadingHTTPServer((host, 0), _Handler)
        self.cdn.daemon_threads = True
        self.cdn.hub = self
        self.tokens = dict(tokens)
        self.roles = dict(roles or {})
        self.orgs = {org: members if isinstance(members, dict) else dict.fromkeys(members, "write")
                     for org, members in (orgs or {}).items()}
        self.url = f"http://{host}:{self.server_address[1]}"
        self.cdn_url = f"http://{host}:{self.cdn.server_address[1]}"
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content, for regular and LFS files
        self.request_log: list[tuple[str, str, int]] = []  # (method, path without query, status)
        self.lock = threading.RLock()
        self._faults: list[list] = []  # [kind, status, good requests to let through first]
        self._secret = secrets.token_bytes(16)

    # --- control, from the test process -------------------------------------------------

    def start(self) -> HubServer:
        for server, name in ((self, "hub-server"), (self.cdn, "hub-cdn")):
            threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self, self.cdn):
            server.shutdown()
            server.server_close()

    def inject_fault(self, kind: str, status: int | None = None, after: int = 0) -> None:
        """The next request of ``kind`` after ``after`` good ones fails with ``status``
        (None: the connection drops)."""
        with self.lock:
            self._faults.append([kind, status, after])

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, kind: str) -> tuple[bool, int | None]:
        with self.lock:
            for i, fault in enumerate(self._faults):
                if fault[0] != kind:
                    continue
                if fault[2] > 0:
                    fault[2] -= 1
                    return False, None
                del self._faults[i]
                return True, fault[1]
        return False, None

    def namespaces(self, user: str) -> list[str]:
        """Where ``user`` may read private repos: their own namespace and their organisations'."""
        return [user] + [org for org, members in self.orgs.items() if user in members]

    def writable_namespaces(self, user: str) -> list[str]:
        """Where ``user`` may write: their namespaces but the organisations they only read."""
        return [namespace for namespace in self.namespaces(user) if self.orgs.get(namespace, {}).get(user) != "read"]

    def sign(self, *parts: str) -> str:
        return hmac.new(self._secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()

    # --- repo state ---------------------------------------------------------------------

    def new_commit(self, repo: Repo, parent: str | None, tree: dict, title: str, message: str, author: str) -> str:
        payload = json.dumps([repo.repo_id, parent, sorted((p, e.sha256) for p, e in tree.items()),
                              title, message, secrets.token_hex(8)])
        sha = hashlib.sha1(payload.encode()).hexdigest()
        repo.commits[sha] = Commit(sha, parent, tree, title, message, author, now_iso())
        return sha

    def store_blob(self, data: bytes, lfs: bool) -> FileEntry:
        entry = FileEntry.of(data, lfs)
        self.blobs[entry.sha256] = data
        return entry


def _entry_json(path: str, entry: FileEntry) -> dict:
    item = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size,
                       "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}
    return item


def _folder_json(path: str) -> dict:
    return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}


def _folders(tree: dict[str, FileEntry]) -> set[str]:
    folders = set()
    for path in tree:
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return folders


def _card_data(tree: dict[str, FileEntry], blobs: dict[str, bytes]) -> dict | None:
    readme = tree.get("README.md")
    if readme is None:
        return None
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", blobs[readme.sha256].decode(errors="replace"), re.S)
    return yaml.safe_load(match.group(1)) if match else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    @property
    def on_cdn(self) -> bool:
        return self.server is not self.hub

    # quiet: the tests read server.request_log (which never holds query strings or headers)
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # --- plumbing -----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        # huggingface_hub always sends a Content-Length (no chunked bodies).
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.body = self._read_body() if method in ("POST", "PUT", "DELETE") else b""
        status = 500
        try:
            status = self._route(method, split.path)
        except _DropConnection:
            status = 0
            self.close_connection = True
        except HubError as error:
            status = error.status
            self._send_json(error.status, {"error": error.message}, error_code=error.code,
                            error_message=error.message, headers=error.headers)
        except Exception as error:  # a server bug must show up as a 500, not a hang
            self._send_json(500, {"error": f"test hub server error: {error!r}"})
            raise
        finally:
            with self.hub.lock:
                self.hub.request_log.append((method, split.path, status))

    def _maybe_fault(self, kind: str) -> None:
        hit, status = self.hub.take_fault(kind)
        if not hit:
            return
        if status is None:
            raise _DropConnection()
        raise HubError(status, f"injected {kind} fault")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _send_json(self, status: int, payload, error_code: str | None = None,
                   error_message: str | None = None, content_type: str = "application/json",
                   headers: dict | None = None) -> int:
        headers = dict(headers or {})
        if error_code:
            headers["X-Error-Code"] = error_code
        if error_message:
            headers["X-Error-Message"] = " ".join(error_message.split())  # one header line
        return self._send(status, json.dumps(payload).encode(), content_type, headers)

    def _json_body(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"request body is not JSON: {error}") from error

    # --- auth ---------------------------------------------------------------------------

    def _user(self, required: bool = False) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header:
            if required:
                raise HubError(401, "Invalid username or password.")
            return None
        user = self.hub.tokens.get(self._token())
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _token(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    def _writer(self, namespace: str) -> str | None:
        """The user, when the request's token may write in ``namespace``; else None."""
        user = self._user()
        if (user is None or namespace not in self.hub.writable_namespaces(user)
                or self.hub.roles.get(self._token()) == "read"):
            return None
        return user

    def _repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        user = self._user()
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and (user is None or repo.owner not in self.hub.namespaces(user))):
            # Like the Hub: a private repo looks absent to others, and without a token it is a 401.
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if write and self._writer(repo.owner) is None:
            raise HubError(401 if user is None else 403, f"You don't have write access to {repo_id}")
        return repo

    def _revision(self, repo: Repo, revision: str) -> Commit:
        sha = repo.resolve(revision)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[sha]

    # --- routing ------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> int:
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if self.on_cdn:
            if segments[0] in ("lfs-upload", "lfs-objects") and len(segments) == 5:
                return self._lfs_transfer(method, segments)
            raise HubError(404, f"the test CDN does not serve {method} {path}")
        if path == "/api/whoami-v2" and method == "GET":
            return self._whoami()
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml()
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo()
        if path == "/api/repos/delete" and method == "DELETE":
            return self._delete_repo()
        if segments[0] == "api" and len(segments) >= 4 and segments[1] in REPO_TYPES:
            return self._api_repo(method, REPO_TYPES[segments[1]], f"{segments[2]}/{segments[3]}", segments[4:])
        if segments[0] == "lfs-verify" and len(segments) == 5:
            return self._lfs_transfer(method, segments)
        repo_type = "model"
        if segments[0] in ("datasets", "spaces"):
            repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
        if len(segments) >= 4 and segments[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{segments[0]}/{segments[1]}", segments[3], "/".join(segments[4:]))
        if len(segments) >= 3 and segments[1] == "resolve" and method in ("GET", "HEAD"):  # a repo id without owner
            return self._resolve(repo_type, segments[0], segments[2], "/".join(segments[3:]))
        if len(segments) == 6 and segments[1].endswith(".git") and segments[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_type, f"{segments[0]}/{segments[1][:-4]}")
        raise HubError(404, f"the test hub server does not implement {method} {path}")

    def _api_repo(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> int:
        if not rest and method == "GET":
            self._maybe_fault("repo-info")
            return self._info(repo_type, repo_id, "main")
        action, args = rest[0] if rest else "", rest[1:]
        if action == "revision" and method == "GET" and args:
            return self._info(repo_type, repo_id, args[0])
        if action == "tree" and method == "GET" and args:
            return self._tree(repo_type, repo_id, args[0], "/".join(args[1:]))
        if action == "paths-info" and method == "POST" and args:
            return self._paths_info(repo_type, repo_id, args[0])
        if action == "preupload" and method == "POST" and args:
            return self._preupload(repo_type, repo_id, args[0])
        if action == "commit" and method == "POST" and args:
            return self._commit(repo_type, repo_id, args[0])
        if action == "refs" and method == "GET":
            return self._refs(repo_type, repo_id)
        if action == "commits" and method == "GET" and args:
            return self._commits(repo_type, repo_id, args[0])
        if action == "branch" and args:
            return self._branch(method, repo_type, repo_id, "/".join(args))
        if action == "tag" and args:
            return self._tag(method, repo_type, repo_id, "/".join(args))
        if action == "settings" and method == "PUT":
            return self._settings(repo_type, repo_id)
        raise HubError(404, f"the test hub server does not implement {method} /api/{repo_type}s/{repo_id}/{action}")

    # --- endpoints ----------------------------------------------------------------------

    def _whoami(self) -> int:
        self._maybe_fault("whoami")
        user = self._user(required=True)
        role = self.hub.roles.get(self._token(), "write")
        token = {"displayName": "tests", "role": role}
        if role == "fineGrained":  # its permissions, by repo, user or organisation
            token["fineGrained"] = {"canReadGatedRepos": False, "global": [], "scoped": []}
        orgs = []
        for org in self.hub.namespaces(user)[1:]:
            entry = {"type": "org", "name": org, "fullname": org}
            if self.hub.orgs[org][user] is not None:
                entry["roleInOrg"] = self.hub.orgs[org][user]
            orgs.append(entry)
        return self._send_json(200, {"type": "user", "name": user, "fullname": user, "orgs": orgs,
                                     "auth": {"type": "access_token", "accessToken": token}})

    def _validate_yaml(self) -> int:
        content = self._json_body().get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        if match:
            try:
                yaml.safe_load(match.group(1))
            except yaml.YAMLError as error:
                message = f"Invalid YAML metadata: {' '.join(str(error).split())}"
                return self._send_json(400, {"errors": [{"message": message}], "warnings": []})
        return self._send_json(200, {"errors": [], "warnings": []})

    def _create_repo(self) -> int:
        user = self._user(required=True)
        body = self._json_body()
        namespace = body.get("organization") or user
        repo_type = body.get("type") or "model"
        repo_id = f"{namespace}/{body['name']}"
        if self._writer(namespace) is None:
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace}")
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"unknown repo type {repo_type}")
        url = f"{self.hub.url}/{URL_PREFIX[repo_type]}{repo_id}"
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:
                return self._send_json(409, {"error": "You already created this repo", "url": url})
            private = body.get("visibility") == "private" or bool(body.get("private"))
            repo = Repo(repo_type, repo_id, private, now_iso())
            tree = {".gitattributes": self.hub.store_blob(GITATTRIBUTES.encode(), lfs=False)}
            repo.branches["main"] = self.hub.new_commit(repo, None, tree, "initial commit", "", user)
            self.hub.repos[(repo_type, repo_id)] = repo
        return self._send_json(200, {"url": url, "name": repo_id})

    def _delete_repo(self) -> int:
        user = self._user(required=True)
        body = self._json_body()
        key = (body.get("type") or "model", f"{body.get('organization') or user}/{body['name']}")
        with self.hub.lock:
            self._repo(*key, write=True)
            del self.hub.repos[key]
        return self._send_json(200, {})

    def _settings(self, repo_type: str, repo_id: str) -> int:
        body = self._json_body()
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            if "private" in body:
                repo.private = bool(body["private"])
            if "visibility" in body:
                repo.private = body["visibility"] == "private"
        return self._send_json(200, {})

    def _info(self, repo_type: str, repo_id: str, revision: str) -> int:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._revision(repo, revision)
            card = _card_data(commit.tree, self.hub.blobs)
            info = {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo.owner,
                "sha": commit.sha, "private": repo.private, "gated": False, "disabled": False,
                "lastModified": commit.date, "createdAt": repo.created_at, "downloads": 0, "likes": 0,
                "tags": list((card or {}).get("tags") or []), "cardData": card,
                "siblings": [
                    {"rfilename": p, "size": e.size, "blobId": e.git_oid,
                     **({"lfs": {"sha256": e.sha256, "size": e.size,
                                 "pointerSize": len(lfs_pointer(e.sha256, e.size))}} if e.lfs else {})}
                    for p, e in sorted(commit.tree.items())
                ],
            }
            if repo_type == "model" and card and card.get("library_name"):
                info["library_name"] = card["library_name"]
        return self._send_json(200, info)

    def _tree(self, repo_type: str, repo_id: str, revision: str, folder: str) -> int:
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            tree = self._revision(repo, revision).tree
            folders = _folders(tree)
            if folder and folder not in folders:
                raise HubError(404, f"{folder} does not exist on {revision}", "EntryNotFound")
            prefix = f"{folder}/" if folder else ""

            def listed(path: str) -> bool:
                return path.startswith(prefix) and (recursive or "/" not in path[len(prefix):])

            items = [_folder_json(d) for d in sorted(folders) if listed(d)]
            items += [_entry_json(p, e) for p, e in sorted(tree.items()) if listed(p)]
        return self._send_json(200, items)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> int:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = self._json_body().get("paths", [])
        else:
            paths = parse_qs(self.body.decode()).get("paths", [])
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            tree = self._revision(repo, revision).tree
            folders = _folders(tree)
            items = []
            for path in paths:
                path = path.strip("/")
                if path in tree:
                    items.append(_entry_json(path, tree[path]))
                elif path in folders:
                    items.append(_folder_json(path))
        return self._send_json(200, items)

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> int:
        files = self._json_body().get("files", [])
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            commit = self._revision(repo, revision)
            answer = []
            for item in files:
                sample = base64.b64decode(item.get("sample", ""))
                lfs = (item["path"].lower().endswith(LFS_SUFFIXES) or b"\0" in sample
                       or item["size"] >= LFS_SIZE_THRESHOLD)
                existing = commit.tree.get(item["path"])
                oid = None
                if existing is not None:
                    oid = existing.sha256 if existing.lfs else existing.git_oid
                answer.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                               "shouldIgnore": False, "oid": oid})
        return self._send_json(200, {"files": answer, "commitOid": commit.sha})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> int:
        if self.query.get("create_pr"):
            raise HubError(400, "the test hub server does not implement pull requests")
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        user = self._user(required=True)
        self._maybe_fault("commit")
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                raise HubError(404 if repo.resolve(revision) is None else 400,
                               f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
            head = repo.branches[revision]
            tree = dict(repo.commits[head].tree)
            header = {}
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    header = value
                elif key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                        else value["content"].encode()
                    tree[value["path"]] = self.hub.store_blob(data, lfs=False)
                elif key == "lfsFile":
                    oid = value["oid"]
                    if oid not in repo.lfs_objects:
                        raise HubError(422, f"Your push was rejected because an LFS pointer pointed to a "
                                            f"file that does not exist ({value['path']})")
                    tree[value["path"]] = FileEntry.of(self.hub.blobs[oid], lfs=True)
                elif key == "deletedFile":
                    if value["path"] not in tree:
                        raise HubError(404, f"A file with this name doesn't exist: {value['path']}",
                                       "EntryNotFound")
                    del tree[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    tree = {p: e for p, e in tree.items() if not p.startswith(prefix)}
                else:
                    raise HubError(400, f"the test hub server does not implement commit operation {key}")
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            sha = self.hub.new_commit(repo, head, tree, header.get("summary", ""),
                                         header.get("description", ""), user)
            repo.branches[revision] = sha
        url = f"{self.hub.url}/{URL_PREFIX[repo_type]}{repo_id}/commit/{sha}"
        return self._send_json(200, {"success": True, "commitOid": sha, "commitUrl": url,
                                     "hookOutput": "", "pullRequestUrl": None})

    def _refs(self, repo_type: str, repo_id: str) -> int:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            refs = {
                "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in repo.tags.items()],
                "converts": [],
            }
        return self._send_json(200, refs)

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> int:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            commit, history = self._revision(repo, revision), []
            while commit is not None:
                history.append({"id": commit.sha, "title": commit.title, "message": commit.message,
                                "authors": [{"user": commit.author}], "date": commit.date})
                commit = repo.commits.get(commit.parent) if commit.parent else None
        return self._send_json(200, history)

    def _branch(self, method: str, repo_type: str, repo_id: str, branch: str) -> int:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            if method == "POST":
                if branch in repo.branches:
                    return self._send_json(409, {"error": f"Reference already exists: refs/heads/{branch}"})
                start = self._json_body().get("startingPoint") or "main"
                repo.branches[branch] = self._revision(repo, start).sha
            elif method == "DELETE":
                if repo.branches.pop(branch, None) is None:
                    raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            else:
                raise HubError(405, f"{method} is not allowed on a branch")
        return self._send_json(200, {})

    def _tag(self, method: str, repo_type: str, repo_id: str, name: str) -> int:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            if method == "POST":  # POST .../tag/{revision} {"tag": name}
                tag = self._json_body()["tag"]
                if tag in repo.tags:
                    return self._send_json(409, {"error": f"Tag already exists: {tag}"})
                repo.tags[tag] = self._revision(repo, name).sha
            elif method == "DELETE":
                if repo.tags.pop(name, None) is None:
                    raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            else:
                raise HubError(405, f"{method} is not allowed on a tag")
        return self._send_json(200, {})

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> int:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._revision(repo, revision)
            entry = commit.tree.get(path)
            if entry is None:
                # the Hub names the commit it looked in, which huggingface_hub caches the file's absence under
                raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
            data = self.hub.blobs[entry.sha256]
        headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
        if entry.lfs:
            # Like the Hub: LFS content comes from a pre-signed CDN URL; the linked headers carry
            # the metadata that hf_hub_download reads from the HEAD answer.
            sig = self.hub.sign("download", repo_type, repo_id, entry.sha256)
            location = f"{self.hub.cdn_url}/lfs-objects/{repo_type}/{repo_id}/{entry.sha256}?sig={sig}"
            headers.update({"Location": location, "X-Linked-Etag": f'"{entry.sha256}"',
                            "X-Linked-Size": str(entry.size), "ETag": f'"{entry.git_oid}"'})
            return self._send(302, b"", "text/plain", headers)
        headers["ETag"] = f'"{entry.git_oid}"'
        return self._send_content(data, headers)

    def _send_content(self, data: bytes, headers: dict) -> int:
        status, range_header = 200, self.headers.get("Range", "")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        return self._send(status, data, "application/octet-stream", headers)

    def _lfs_batch(self, repo_type: str, repo_id: str) -> int:
        body = self._json_body()
        operation = body.get("operation")
        if operation not in ("upload", "download"):
            raise HubError(400, f"unknown LFS operation {operation!r}")
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=operation == "upload")
            objects = []
            for obj in body.get("objects", []):
                oid, size = obj["oid"], obj["size"]
                item = {"oid": oid, "size": size, "authenticated": True}
                present = oid in repo.lfs_objects
                if operation == "upload" and not present:
                    sig = self.hub.sign("upload", repo_type, repo_id, oid, str(size))
                    item["actions"] = {
                        "upload": {"href": f"{self.hub.cdn_url}/lfs-upload/{repo_type}/{repo_id}/{oid}"
                                           f"?size={size}&sig={sig}"},
                        "verify": {"href": f"{self.hub.url}/lfs-verify/{repo_type}/{repo_id}/{oid}"},
                    }
                elif operation == "download":
                    if present:
                        sig = self.hub.sign("download", repo_type, repo_id, oid)
                        item["actions"] = {"download": {"href": f"{self.hub.cdn_url}/lfs-objects/{repo_type}/{repo_id}/{oid}?sig={sig}"}}
                    else:
                        item["error"] = {"code": 404, "message": "Object does not exist"}
                objects.append(item)
        return self._send_json(200, {"transfer": "basic", "objects": objects},
                               content_type="application/vnd.git-lfs+json")

    def _lfs_transfer(self, method: str, segments: list[str]) -> int:
        kind, repo_type, repo_id, oid = segments[0], segments[1], f"{segments[2]}/{segments[3]}", segments[4]
        key = (repo_type, repo_id)
        if kind == "lfs-upload" and method == "PUT":
            size = self.query.get("size", "")
            if not hmac.compare_digest(self.query.get("sig", ""), self.hub.sign("upload", repo_type, repo_id, oid, size)):
                raise HubError(403, "bad or missing upload signature")
            self._maybe_fault("lfs-upload")
            if hashlib.sha256(self.body).hexdigest() != oid or len(self.body) != int(size):
                raise HubError(400, f"uploaded content does not match oid {oid} / size {size}")
            with self.hub.lock:
                if key not in self.hub.repos:
                    raise HubError(404, "Repository not found", "RepoNotFound")
                self.hub.blobs[oid] = self.body
                self.hub.repos[key].lfs_objects.add(oid)
            return self._send(200, b"", "text/plain", {"ETag": f'"{oid}"'})
        if kind == "lfs-verify" and method == "POST":
            with self.hub.lock:
                repo = self._repo(repo_type, repo_id, write=True)
                body = self._json_body()
                if body.get("oid") not in repo.lfs_objects or len(self.hub.blobs[body["oid"]]) != body.get("size"):
                    raise HubError(404, f"LFS object {body.get('oid')} was not uploaded")
            return self._send_json(200, {})
        if kind == "lfs-objects" and method in ("GET", "HEAD"):
            if not hmac.compare_digest(self.query.get("sig", ""), self.hub.sign("download", repo_type, repo_id, oid)):
                raise HubError(403, "bad or missing download signature")
            with self.hub.lock:
                repo = self.hub.repos.get(key)
                if repo is None or oid not in repo.lfs_objects:
                    raise HubError(404, "Object does not exist")
                data = self.hub.blobs[oid]
            return self._send_content(data, {"ETag": f'"{oid}"'})
        raise HubError(405, f"{method} is not allowed on {kind}")

