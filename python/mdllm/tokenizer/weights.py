"""Tokenizer files: model.safetensors (float32 parameters) + config.json, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mdllm.errors import in_file
from mdllm.files import atomic_output
from mdllm.tokenizer.config import config_from_dict

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_tokenizer(directory, cfg, tensors: dict[str, np.ndarray], extra_config=None):
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    with atomic_output(directory / WEIGHTS_NAME) as tmp:
        save_file(arrays, str(tmp), metadata={"format": "mdllm-foldtoken", "version": str(cfg.version)})
    config = json.loads(cfg.to_json())
    config.update(extra_config or {})
    with atomic_output(directory / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")


def read_config(directory):
    path = Path(directory) / CONFIG_NAME
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise in_file(path, "no such file (a tokenizer directory holds config.json and model.safetensors)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise in_file(path, f"not a JSON tokenizer config: {exc}") from None
    if not isinstance(raw, dict):
        raise in_file(path, "not a JSON object")
    raw = {k: v for k, v in raw.items() if not k.startswith("_")}  # "_training" etc. are notes
    return config_from_dict(raw, source=str(path))


def read_header(path) -> tuple[dict[str, str], dict[str, tuple]]:
    """(metadata, tensor shapes) of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            return f.metadata() or {}, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types
        raise in_file(path, f"not a readable safetensors file: {exc}") from None


def read_tensors(path, expected: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Load and check every tensor the model needs (names, shapes, finite values)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise in_file(path, "no such file") from None
    except (SafetensorError, OSError, ValueError, Exception) as exc:  # safetensors raises several types
        raise in_file(
            path, f"not a readable safetensors file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise in_file(
            path, f"missing tensors {missing[:3]}{' ...' if len(missing) > 3 else ''} (wrong or corrupt tokenizer)"
        )
    out = {}
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise in_file(path, f"tensor {name} has shape {tuple(t.shape)}, config expects {tuple(shape)}")
        t = t.astype(np.float32)
        if not np.isfinite(t).all():
            raise in_file(path, f"tensor {name} holds NaN or infinite values")
        out[name] = t
    return out
