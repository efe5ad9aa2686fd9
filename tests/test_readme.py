"""The documentation's code runs: every ```python block of README.md, and each block of docs/*.md marked
runnable (the line before its fence is RUNNABLE_MARK), each in a fresh Python process with one thread.

README's blocks run in order in one folder, as a reader pastes them: its Hub block pushes the folders
the method scripts saved. Everything runs against the local Hub server of tests/hub, never the Hub.
The built-in data caches (HF_HOME's hf_eff folder: SmolLM2 converted once, GraNT's data sets) are the
user's own, so that the scripts take seconds once they are built.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import constants

from tests.hub.conftest import local_hub  # noqa: F401  (the fixture)

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNABLE_MARK = "<!-- runnable -->"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
BLOCK_TIMEOUT_S = 300


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    code: str

    def __str__(self) -> str:
        first = next((line for line in self.code.splitlines() if line.strip()), "")
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line} ({first.strip()})"


def python_blocks(path: Path, runnable_only: bool) -> list[Block]:
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if runnable_only and before.strip() != RUNNABLE_MARK:
            continue
        blocks.append(Block(path, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Runs the block as a script in `cwd`; returns its wall and CPU seconds, or fails naming it with its stderr."""
    start, cpu_start = time.perf_counter(), _children_cpu_seconds()
    process = subprocess.run([sys.executable, "-c", block.code], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=BLOCK_TIMEOUT_S)
    if process.returncode != 0:
        pytest.fail(f"the block at {block} exited with {process.returncode}:\n{process.stderr[-6000:]}", pytrace=False)
    return time.perf_counter() - start, _children_cpu_seconds() - cpu_start


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture
def block_env(local_hub):  # noqa: F811
    # HF_HOME stays the user's: it holds the built-in data caches; the Hub's and datasets' caches are the test's own.
    return local_hub.env(HF_HOME=constants.HF_HOME)


README_BLOCKS = python_blocks(REPO_ROOT / "README.md", runnable_only=False)
DOCS_BLOCKS = [block for path in sorted((REPO_ROOT / "docs").glob("*.md")) for block in python_blocks(path, True)]


def test_the_documents_have_the_blocks_this_file_runs():
    # a fence the pattern misses would go untested silently
    assert len(README_BLOCKS) == (REPO_ROOT / "README.md").read_text().count("```python") >= 4
    assert DOCS_BLOCKS


def test_readme_scripts_run_in_order(block_env, tmp_path, capsys):
    timings = [(str(block), run_block(block, tmp_path, block_env)) for block in README_BLOCKS]
    with capsys.disabled():
        print("\n" + "\n".join(f"{wall:6.1f} s wall {cpu:6.1f} s CPU  {name}" for name, (wall, cpu) in timings))


@pytest.mark.parametrize("block", DOCS_BLOCKS, ids=str)
def test_runnable_docs_block(block, block_env, tmp_path):
    run_block(block, tmp_path, block_env)


def test_a_block_that_raises_fails_naming_its_place_and_error(tmp_path):
    broken = Block(REPO_ROOT / "README.md", 7, "import sys\nsys.exit('the broken line')\n")
    with pytest.raises(pytest.fail.Exception, match=r"README\.md:7 \(import sys\) exited with 1:\nthe broken line"):
        run_block(broken, tmp_path, {"PATH": "/usr/bin:/bin"})
