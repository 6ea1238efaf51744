"""The code passes ruff's lint rules configured in pyproject.toml (unused and undefined names, syntax)
and is laid out as `ruff format` lays it out (run it before committing)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["python", "tests", "bench", "data", "docs"]


def _ruff(*args):
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", *PATHS], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_finds_nothing():
    out = _ruff("check")
    assert out.returncode == 0, out.stdout + out.stderr


def test_code_is_formatted():
    out = _ruff("format", "--check")
    assert out.returncode == 0, "run `ruff format " + " ".join(PATHS) + "`:\n" + out.stdout + out.stderr
