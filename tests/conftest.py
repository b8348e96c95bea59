"""Shared helpers for the tests."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis: the default profile replays the same programs every run (CI is deterministic and keeps no example
# database); `HYPOTHESIS_PROFILE=explore` draws new ones each run, for a nightly job or a hunt (a failure prints
# its example and a @reproduce_failure blob to replay it).
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, database=None)
settings.register_profile("explore", max_examples=1000, deadline=None, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m compiler ARGS` as a user would and capture its output."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "compiler", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``path`` has ``count`` lines, while ``proc`` runs: fails (never falls through) on exit or timeout."""
    deadline = time.time() + timeout
    while not path.exists() or len(path.read_text().splitlines()) < count:
        assert proc.poll() is None, f"the program ended before {path} had {count} lines"
        assert time.time() < deadline, f"{path} did not reach {count} lines in {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is fastest, and two thrash when the machine is shared."""
    import torch
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def small_cnn() -> str:
    return """
    model small(num_classes = 10) {
        input x: [1, 8, 8]
        x = x -> conv(8, 3) -> bn -> relu -> maxpool(2)
        output x -> flatten -> linear(num_classes)
    }
    """
