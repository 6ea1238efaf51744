"""Where the shipped default models are: inside the installed package (a wheel), or in the
repository's top-level models/ folder (an editable install or a source checkout)."""

from __future__ import annotations

from pathlib import Path

from mdllm.errors import MdllmError

PACKAGE_DIR = Path(__file__).resolve().parent
# Shipped models under their former names (scripts and --tokenizer values written for mdllm 0.1).
RENAMED = {"foldtoken": "torsiontoken"}


def model_path(*parts: str) -> Path:
    """Path of a shipped model file or folder, e.g. model_path("torsiontoken")."""
    if parts and parts[0] in RENAMED:
        parts = (RENAMED[parts[0]], *parts[1:])
    for root in (PACKAGE_DIR / "models", PACKAGE_DIR.parents[1] / "models"):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise MdllmError(
        f"shipped model '{'/'.join(parts)}' not found (looked in {PACKAGE_DIR / 'models'} "
        f"and {PACKAGE_DIR.parents[1] / 'models'}); reinstall mdllm or pass a path"
    )
