"""What every tokenizer kind shares: a tokenizer is a directory with ``config.json`` and
``model.safetensors`` of the kind its config names, motion (``mdllm.tokenizer.motion``) or torsion
(``mdllm.tokenizer.torsion``); ``load_tokenizer`` reads either. Encode and decode run on the compiled
C++ core when it provides the kernels of the kind (no PyTorch needed), else on the kind's reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file
from mdllm.tokenizer.config import GEOMETRY_NAMES, MotionConfig, TorsionConfig
from mdllm.files import sha256_file
from mdllm.paths import model_path
from mdllm.tokenizer.weights import WEIGHTS_NAME, read_config, read_tensors


def expected_shapes(cfg) -> dict[str, tuple]:
    """Every tensor of a tokenizer file with its shape, derived from the config alone."""
    if cfg.kind == TorsionConfig.kind:
        return {"codebook": (cfg.codebook_size, 3), "geometry": (len(GEOMETRY_NAMES),)}
    return {"codebook": (cfg.codebook_size, 12)}


def token_hash(cfg, tensors: dict[str, np.ndarray]) -> str:
    """sha256 of everything that decides the tokens: the config and every tensor (in both kinds the
    codebook is encoder and decoder alike). Token files and language models are tied to this hash, not
    to the file's, so a copy of a tokenizer under another name or folder still matches them."""
    import hashlib

    digest = hashlib.sha256(cfg.to_json().encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name], np.float32).tobytes())
    return digest.hexdigest()


def _read_directory(path):
    """(directory, config, tensors, sha256 of the weights file) of a tokenizer directory (None: the
    shipped ``models/torsiontoken``; a bare name such as "motiontoken": that shipped model)."""
    if path is None:
        directory = model_path("torsiontoken")
    else:
        directory = Path(path)
        if not directory.exists() and len(directory.parts) == 1:
            directory = model_path(str(path))
    if directory.is_file():
        directory = directory.parent
    if not directory.is_dir():
        raise in_file(directory, "no such tokenizer directory")
    cfg = read_config(directory)
    weights = directory / WEIGHTS_NAME
    return directory, cfg, read_tensors(weights, expected_shapes(cfg)), sha256_file(weights)


def load_tokenizer(path=None, backend: str = "auto"):
    """Any tokenizer directory, of whichever kind its config.json names (see ``_read_directory``): a
    ``MotionTokenizer`` or a ``TorsionTokenizer``."""
    directory, cfg, tensors, sha256 = _read_directory(path)
    if cfg.kind == MotionConfig.kind:
        from mdllm.tokenizer.motion import MotionTokenizer

        return MotionTokenizer(cfg, tensors, directory, sha256, "numpy" if backend == "torch" else backend)
    from mdllm.tokenizer.torsion import TorsionTokenizer

    return TorsionTokenizer(cfg, tensors, directory, sha256, backend)


def check_token_array(tokens, codebook_size: int) -> np.ndarray:
    """(F, L) or (L,) integer tokens in [0, codebook_size) as contiguous int32 (F, L)."""
    tokens = np.asarray(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        raise MdllmError(f"tokens must have shape (frames, residues), got {tokens.shape}")
    if tokens.size and not np.issubdtype(tokens.dtype, np.integer):
        raise MdllmError(f"tokens must be integers, got {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= codebook_size):
        bad = tokens[(tokens < 0) | (tokens >= codebook_size)][0]
        raise MdllmError(f"token {bad} is out of range for this tokenizer (codebook size {codebook_size})")
    return np.ascontiguousarray(tokens, dtype=np.int32)


def compiled_kernels(core, path: Path, cfg, backend: str, fallback: str):
    """(backend name, the C++ tokenizer or None): ``backend`` 'auto' takes the compiled ``core`` class
    when the build has it, 'cpp' insists on it, ``fallback`` ('torch' or 'numpy') is the reference."""
    if backend not in ("auto", "cpp", fallback):
        raise MdllmError(f"unknown tokenizer backend '{backend}' (auto, cpp or {fallback})")
    if backend == "cpp" and core is None:
        raise MdllmError(f"the compiled core has no kernels for this tokenizer kind; use backend='{fallback}'")
    if backend == fallback or core is None:
        return fallback, None
    return "cpp", core(str(path / WEIGHTS_NAME), cfg.to_json())  # the reader's checks raise MdllmError


def _as_backbone(xyz) -> np.ndarray:
    """(F, L, 4, 3) float32 as the geometry kernels take it, refusing empty chains and NaN."""
    from mdllm.geometry import as_backbone_array

    xyz = as_backbone_array(xyz)
    if xyz.shape[1] == 0:
        raise MdllmError(f"expected backbone coordinates of shape (frames, residues, 4, 3), got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise MdllmError("backbone coordinates contain NaN or infinite values")
    return xyz
