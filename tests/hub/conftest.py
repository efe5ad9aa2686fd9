"""The local Hub for the hub tests: one server per test session (per xdist worker).

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_DISABLE_XET when it is first imported,
and other test modules import it before this one runs. So the artifact round trips run in a
fresh Python process whose environment points at the local server (``LocalHub.run``); tests of
the server itself run here, with ``HfApi(endpoint=...)`` and an explicit cache folder.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from huggingface_hub import HfApi, constants

from tests.hub.hub_server import HubServer

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
OWNER = "hf-eff-tester"
OTHER_USER = "someone-else"
ORG = "hf-eff-org"  # OWNER is a member
RESULT_PREFIX = "ROUNDTRIP-RESULT "


@dataclass
class LocalHub:
    server: HubServer
    token: str
    other_token: str
    home: Path
    read_token: str  # OWNER's, with the "read" role
    fine_grained_token: str  # OWNER's, whose whoami lists scopes instead of a plain role

    @property
    def url(self) -> str:
        return self.server.url

    def repo_id(self, stem: str) -> str:
        return f"{OWNER}/{stem}-{secrets.token_hex(4)}"

    def api(self, token: str | bool | None = None) -> HfApi:
        return HfApi(endpoint=self.url, token=self.token if token is None else token)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a process that talks to this server only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.update(
            HF_ENDPOINT=self.url,
            HF_HUB_DISABLE_XET="1",
            HF_HOME=str(self.home),
            HF_HUB_CACHE=str(self.home / "hub"),
            HF_DATASETS_CACHE=str(self.home / "datasets"),
            HF_TOKEN=self.token,
            HF_HUB_ETAG_TIMEOUT="30",
            HF_HUB_DOWNLOAD_TIMEOUT="60",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            TOKENIZERS_PARALLELISM="false",
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )
        env.update(extra)
        return env

    def run_code(self, code: str, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Runs the Python ``code`` with ``argv`` in a fresh process that talks to this server (`env`)."""
        return subprocess.run([sys.executable, "-c", code, *argv], env=self.env(), capture_output=True, text=True,
                              timeout=timeout, cwd=REPO_ROOT)

    def run(self, scenario: str, timeout: float = 300, env: dict | None = None, **kwargs) -> dict:
        """Runs ``tests/hub/roundtrips.py SCENARIO`` in a fresh process and returns its result dict."""
        process = subprocess.run(
            [sys.executable, str(HERE / "roundtrips.py"), scenario, json.dumps(kwargs)],
            env=env or self.env(), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
        )
        lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if process.returncode != 0 or not lines:
            raise AssertionError(
                f"round trip {scenario!r} failed (exit {process.returncode}):\n"
                f"{process.stdout[-3000:]}\n{process.stderr[-6000:]}"
            )
        result = json.loads(lines[-1][len(RESULT_PREFIX):])
        result["_logs"] = process.stdout + process.stderr
        return result


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    token, other_token, read_token, fine_grained_token = (f"hf_{secrets.token_hex(16)}" for _ in range(4))
    server = HubServer({token: OWNER, other_token: OTHER_USER, read_token: OWNER, fine_grained_token: OWNER},
                       roles={read_token: "read", fine_grained_token: "fineGrained"}, orgs={ORG: [OWNER]}).start()
    home = tmp_path_factory.mktemp("hf_home")
    # For the in-process tests: huggingface_hub was imported before this fixture could set the
    # environment, so the Xet switch is patched where it is read.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        yield LocalHub(server, token, other_token, home, read_token, fine_grained_token)
    server.stop()


@pytest.fixture
def hub_cache(tmp_path) -> Path:
    return tmp_path / "hub-cache"


@pytest.fixture
def inject_fault(local_hub):
    """``inject_fault(kind, status=None, after=0)`` on the server; unused faults are cleared."""
    yield local_hub.server.inject_fault
    local_hub.server.clear_faults()


@pytest.fixture(scope="session")
def run_once(local_hub, tmp_path_factory, worker_id):
    """``run_once(name, scenario, **kwargs)``: the scenario's result, computed by whichever
    xdist worker asks first and read from a file by the others (pytest-xdist's recipe for
    session fixtures that must run once), so that tests sharing a costly scenario can land on
    different workers."""
    results: dict[str, dict] = {}
    # Under xdist each worker's base temp folder sits in the session's own folder.
    shared = tmp_path_factory.getbasetemp().parent if worker_id != "master" else None

    def run(name: str, scenario: str, **kwargs) -> dict:
        if shared is None:
            if name not in results:
                results[name] = local_hub.run(scenario, **kwargs)
            return results[name]
        result_file = shared / f"hub-scenario-{name}.json"
        with FileLock(str(result_file) + ".lock"):
            if not result_file.is_file():
                result_file.write_text(json.dumps(local_hub.run(scenario, **kwargs)))
            return json.loads(result_file.read_text())

    return run
