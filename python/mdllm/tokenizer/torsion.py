"""Torsion tokens: one learned (omega, phi, psi) code per residue that describes the fold itself, decoded
exactly by building the chain from ideal bonds and angles, encoded by closed-loop beam search.

``TorsionTokenizer`` (``models/torsiontoken``) runs on the C++ core (``mdllm._core.TorsionTokenizer``) when
it has the kernels and on the PyTorch reference (``mdllm.tokenizer.torsion_torch``) otherwise. In
generation it describes the key frame's fold in the language model's prompt; the motion tokenizer
(``mdllm.tokenizer.motion``) describes the frames. The exact algorithm is docs/torsion_tokenizer_spec.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file


class TorsionTokenizer:
    """A torsion codebook: frames of backbones to one token per residue and back."""

    kind = "torsion"
    needs_key_frame = False  # tokens describe the fold itself

    def __init__(self, cfg, tensors: dict[str, np.ndarray], path: Path, sha256: str, backend: str = "auto"):
        from mdllm.tokenizer.api import compiled_kernels, token_hash

        self.config = cfg
        self.path = path
        self.hash = token_hash(cfg, tensors)  # what token files and language models are tied to
        self.file_hash = sha256
        self.decoder_hash = sha256  # what decides decoded frames: the weights file alone
        self._tensors = tensors
        self.backend, self._cpp = compiled_kernels(_core_class(), path, cfg, backend, "torch")
        self._torch_model = None

    @classmethod
    def load(cls, path=None, backend: str = "auto") -> "TorsionTokenizer":
        """Load a torsion tokenizer directory (None: the shipped ``models/torsiontoken``)."""
        from mdllm.tokenizer.api import load_tokenizer

        tok = load_tokenizer(path, backend=backend)
        if not isinstance(tok, cls):
            raise in_file(
                tok.path,
                f"a {tok.kind} tokenizer, not a torsion tokenizer (load any kind with mdllm.tokenizer.load_tokenizer)",
            )
        return tok

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def __repr__(self):
        return f"TorsionTokenizer({self.path}, codebook_size={self.codebook_size}, backend={self.backend})"

    def torch_model(self):
        """The PyTorch reference holding these weights (needs the 'train' extra)."""
        if self._torch_model is None:
            try:
                from mdllm.tokenizer.torsion_torch import TorsionTokenModel
            except ImportError:
                raise MdllmError("PyTorch is not installed (pip install mdllm[train])") from None
            self._torch_model = TorsionTokenModel(
                self._tensors["codebook"], self._tensors["geometry"], self.config.beam_width
            ).eval()
        return self._torch_model

    def encode(self, xyz, batch_size: int = 64) -> np.ndarray:
        """Backbone (F, L, 4, 3) nm (array or Backbone) -> tokens int32 (F, L)."""
        from mdllm.tokenizer.api import _as_backbone

        xyz = _as_backbone(xyz)
        if self.backend == "cpp":
            out = np.empty(xyz.shape[:2], np.int32)
            self._cpp.encode(xyz, xyz.shape[0], xyz.shape[1], out)  # bad input: MdllmError from the core
            return out
        import torch

        model = self.torch_model()
        chunks = [
            model.encode(torch.from_numpy(xyz[i : i + batch_size])).numpy() for i in range(0, len(xyz), batch_size)
        ]
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
        chunks = [
            model.decode(torch.from_numpy(tokens[i : i + batch_size].astype(np.int64))).numpy()
            for i in range(0, len(tokens), batch_size)
        ]
        return np.concatenate(chunks).astype(np.float32)

    def check_tokens(self, tokens) -> np.ndarray:
        from mdllm.tokenizer.api import check_token_array

        return check_token_array(tokens, self.codebook_size)


def _core_class():
    try:
        from mdllm import _core
    except ImportError:
        return None
    return getattr(_core, "TorsionTokenizer", None)
