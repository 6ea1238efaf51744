"""``FoldTokenizer``: one structure token per residue per frame, and back to N, CA, C, O.

A tokenizer is a directory with ``config.json`` and ``model.safetensors``, of one of two kinds: the
torsion-codebook kind (the shipped default, ``mdllm.tokenizer.torsion``) or the transformer kind
(``mdllm.tokenizer.model``). Encode and decode run on the compiled C++ core when it provides the
tokenizer kernels (no PyTorch needed), else on PyTorch.
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
    if cfg.kind == MotionConfig.kind:
        return {"codebook": (cfg.codebook_size, 12)}
    d, f, n = cfg.dim, cfg.ffn_dim, len(cfg.levels)
    shapes = {}

    def linear(name, out_dim, in_dim):
        shapes[f"{name}.weight"] = (out_dim, in_dim)
        shapes[f"{name}.bias"] = (out_dim,)

    def norm(name):
        shapes[f"{name}.weight"] = (d,)
        shapes[f"{name}.bias"] = (d,)

    def blocks(prefix, count):
        for i in range(count):
            b = f"{prefix}.blocks.{i}"
            norm(f"{b}.attn_norm")
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                linear(f"{b}.attn.{proj}", d, d)
            shapes[f"{b}.attn.rel_pos_bias"] = (cfg.heads, 2 * cfg.max_rel_pos + 1)
            norm(f"{b}.ffn_norm")
            linear(f"{b}.up_proj", f, d)
            linear(f"{b}.down_proj", d, f)

    linear("encoder.edge_in", d, 21 + cfg.n_rbf)
    shapes["encoder.seq_sep.weight"] = (2 * cfg.max_seq_sep + 1, d)
    linear("encoder.edge_out", d, d)
    linear("encoder.node_in", d, 9)
    norm("encoder.in_norm")
    blocks("encoder", cfg.encoder_layers)
    norm("encoder.out_norm")
    linear("encoder.to_latent", n, d)
    linear("decoder.from_code", d, n)
    blocks("decoder", cfg.decoder_layers)
    norm("decoder.out_norm")
    linear("decoder.head", 18, d)
    shapes["decoder.ideal_local"] = (3, 3)
    return shapes


# Config fields that, with the encoder's tensors, fix which token each frame gets.
ENCODER_FIELDS = ("levels", "k_neighbours", "n_rbf", "rbf_max_nm", "max_seq_sep", "dim", "heads", "ffn_dim",
                  "encoder_layers", "max_rel_pos", "version")


def token_hash(cfg, tensors: dict[str, np.ndarray]) -> str:
    """sha256 of everything that decides the tokens (the encoder and quantizer), not the decoder: a
    tokenizer whose decoder was adapted to one protein keeps the hash, and the language models of it.
    In the torsion and motion kinds the codebook is both encoder and decoder, so all of it counts."""
    import hashlib
    import json

    if cfg.kind in (TorsionConfig.kind, MotionConfig.kind):
        digest = hashlib.sha256(cfg.to_json().encode())
        hashed = sorted(tensors)
    else:
        digest = hashlib.sha256(json.dumps({f: getattr(cfg, f) for f in ENCODER_FIELDS}, sort_keys=True).encode())
        hashed = sorted(n for n in tensors if n.startswith("encoder."))
    for name in hashed:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name], np.float32).tobytes())
    return digest.hexdigest()


def _core_tokenizer(kind: str):
    """The compiled class of this kind of tokenizer, or None where the core lacks it."""
    try:
        from mdllm import _core
    except ImportError:
        return None
    return getattr(_core, "TorsionTokenizer" if kind == TorsionConfig.kind else "Tokenizer", None)


def _read_directory(path):
    """(directory, config, tensors, sha256 of the weights file) of a tokenizer directory (None: the
    shipped ``models/foldtoken``; a bare name such as "motiontoken": that shipped model)."""
    if path is None:
        directory = model_path("foldtoken")
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
    """Any tokenizer directory, of whichever kind its config.json names (see ``_read_directory``)."""
    directory, cfg, tensors, sha256 = _read_directory(path)
    if cfg.kind == MotionConfig.kind:
        from mdllm.tokenizer.motion import MotionTokenizer

        return MotionTokenizer(cfg, tensors, directory, sha256, "numpy" if backend == "torch" else backend)
    return FoldTokenizer(cfg, tensors, directory, sha256, backend)


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
    try:
        return "cpp", core(str(path / WEIGHTS_NAME), cfg.to_json())
    except ValueError as exc:  # the C++ reader's own checks (dtype, offsets, values)
        raise MdllmError(str(exc)) from None


class FoldTokenizer:
    needs_key_frame = False  # tokens describe the fold itself (torsion and transformer kinds)

    def __init__(self, cfg, tensors: dict[str, np.ndarray], path: Path, sha256: str, backend: str = "auto"):
        self.config = cfg
        self.path = path
        self.hash = token_hash(cfg, tensors)  # what token files and language models are tied to
        self.file_hash = sha256  # the whole weights file, decoder included
        self._tensors = tensors
        self.backend, self._cpp = compiled_kernels(_core_tokenizer(cfg.kind), path, cfg, backend, "torch")
        self._torch_model = None

    @classmethod
    def load(cls, path=None, backend: str = "auto") -> "FoldTokenizer":
        """Load a torsion or transformer tokenizer directory (None: the shipped default in models/foldtoken)."""
        directory, cfg, tensors, sha256 = _read_directory(path)
        if cfg.kind == MotionConfig.kind:
            raise in_file(directory, "a motion tokenizer; load it with mdllm.tokenizer.load_tokenizer")
        return cls(cfg, tensors, directory, sha256, backend)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def kind(self) -> str:
        """'torsion' (decoding is exact chain building: nothing to adapt) or 'transformer'."""
        return self.config.kind

    def __repr__(self):
        return (f"FoldTokenizer({self.path}, kind={self.kind}, codebook_size={self.codebook_size}, "
                f"backend={self.backend})")

    # --- torch backend ------------------------------------------------------------------------
    def torch_model(self):
        """The PyTorch module holding these weights (needs the 'train' extra)."""
        if self._torch_model is None:
            try:
                import torch
            except ImportError:
                raise MdllmError("PyTorch is not installed (pip install mdllm[train])") from None
            if self.kind == TorsionConfig.kind:
                from mdllm.tokenizer.torsion import TorsionTokenModel

                model = TorsionTokenModel(self._tensors["codebook"], self._tensors["geometry"],
                                          self.config.beam_width)
            else:
                from mdllm.tokenizer.model import FoldTokenModel

                model = FoldTokenModel(self.config)
                model.load_state_dict({k: torch.from_numpy(v) for k, v in self._tensors.items()})
            self._torch_model = model.eval()
        return self._torch_model

    # --- public API ---------------------------------------------------------------------------
    def encode(self, xyz, batch_size: int = 64) -> np.ndarray:
        """Backbone (F, L, 4, 3) nm (array or Backbone) -> tokens int32 (F, L)."""
        xyz = _as_backbone(xyz)
        if self.backend == "cpp":
            out = np.empty(xyz.shape[:2], np.int32)
            try:
                self._cpp.encode(xyz, xyz.shape[0], xyz.shape[1], out)
            except ValueError as exc:
                raise MdllmError(str(exc)) from None
            return out
        import torch

        model = self.torch_model()
        try:
            chunks = [model.encode(torch.from_numpy(xyz[i:i + batch_size])).numpy()
                      for i in range(0, len(xyz), batch_size)]
        except ValueError as exc:  # a degenerate first residue
            raise MdllmError(str(exc)) from None
        return np.concatenate(chunks).astype(np.int32)

    def decode(self, tokens, batch_size: int = 64) -> np.ndarray:
        """Tokens (F, L) or (L,) -> backbone float32 (F, L, 4, 3) nm, atoms N, CA, C, O."""
        tokens = self.check_tokens(tokens)
        if self.backend == "cpp":
            out = np.empty(tokens.shape + (4, 3), np.float32)
            self._cpp.decode(tokens, tokens.shape[0], tokens.shape[1], out)
            return out
        import torch

        model = self.torch_model()
        chunks = [model.decode(torch.from_numpy(tokens[i:i + batch_size].astype(np.int64))).numpy()
                  for i in range(0, len(tokens), batch_size)]
        return np.concatenate(chunks).astype(np.float32)

    def check_tokens(self, tokens) -> np.ndarray:
        return check_token_array(tokens, self.codebook_size)


def _as_backbone(xyz) -> np.ndarray:
    """(F, L, 4, 3) float32 as the geometry kernels take it, refusing empty chains and NaN."""
    from mdllm.geometry import as_backbone_array

    xyz = as_backbone_array(xyz)
    if xyz.shape[1] == 0:
        raise MdllmError(f"expected backbone coordinates of shape (frames, residues, 4, 3), got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise MdllmError("backbone coordinates contain NaN or infinite values")
    return xyz
