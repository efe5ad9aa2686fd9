"""Runs a test module on 2 CPU ranks with the shipped accelerate config."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_ranks(script: str, *args: str) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file trainers/accelerate/cpu_2proc.yaml script args` on a free port."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "trainers/accelerate/cpu_2proc.yaml"),
         "--main_process_port", str(_free_port()), script, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert launch.returncode == 0, launch.stderr[-4000:]
    return launch
