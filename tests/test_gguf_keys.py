"""The GGUF metadata keys have one list in Python (mdllm.lm.gguf_keys) and a C++ mirror
(cpp/include/mdllm/gguf_keys.hpp); they must agree key for key, and nothing else spells a key."""

import re
from pathlib import Path

from mdllm.lm import gguf_keys

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "cpp" / "include" / "mdllm" / "gguf_keys.hpp"


def python_keys() -> dict[str, str]:
    return {name: value for name, value in vars(gguf_keys).items() if name.isupper() and isinstance(value, str)}


def header_keys() -> dict[str, str]:
    found = re.findall(r'inline\s+constexpr\s+const\s+char\s*\*\s*k(\w+)\s*=\s*"([^"]*)"\s*;', HEADER.read_text())
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper(): value for name, value in found}


def test_header_mirrors_the_python_constants():
    py, cpp = python_keys(), header_keys()
    assert len(py) >= 15
    assert cpp == py


def test_no_other_file_spells_a_key():
    """Writers and readers import the constants instead of repeating the strings."""
    keys = [v for k, v in python_keys().items() if k != "PREFIX"]
    # the repository's own copy (the installed package may live elsewhere, e.g. in CI's site-packages)
    owners = {(ROOT / "python" / "mdllm" / "lm" / "gguf_keys.py").resolve(), HEADER.resolve()}
    offenders = []
    for path in [*(ROOT / "python").rglob("*.py"), *(ROOT / "cpp").rglob("*.[ch]pp")]:
        if path.resolve() in owners:
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(ROOT)}: {k}" for k in keys if f'"{k}"' in text]
    assert not offenders
