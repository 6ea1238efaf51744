"""Motion tokens anchored to a key frame: one token per residue per frame, the residue's backbone
displacement from the key frame, in the key residue's own frame.

Torsion tokens describe a fold by building the chain, so one wrong token swings everything downstream.
Motion tokens describe a frame as the key frame plus a per-residue displacement of N, CA, C, O (after
superposing the frame on the key by CA), written in the key residue's rigid frame so that a code means
the same local motion in every protein. Decoding adds the displacements back: an error stays in its
residue. Chain breaks and several chains need nothing special, since every residue is anchored on its
own. The exact algorithm is docs/motion_tokenizer_spec.md; this module holds the numpy reference
(``encode_reference``, ``decode_reference``) and ``MotionTokenizer``, which runs on the C++ core
(``mdllm._core.MotionTokenizer``) when it has the kernels and on the reference otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file

DEGENERATE_NM = 1e-6


# --- numpy reference (docs/motion_tokenizer_spec.md) ----------------------------------------------
def superpose_on_key(xyz, key) -> np.ndarray:
    """(F, L, 4, 3) frames moved onto the key (L, 4, 3) by the CA superposition, float64."""
    from mdllm.geometry.vectors import kabsch

    x = np.asarray(xyz, np.float64)
    y = np.asarray(key, np.float64)
    r, cx, cy = kabsch(x[:, :, 1], y[None, :, 1])  # (F, 3, 3), (F, 3), (1, 3)
    return np.einsum("fab,flkb->flka", r, x - cx[:, None, None]) + cy[:, None, None]


def key_frames(key) -> np.ndarray:
    """(L, 3, 3) rotations of the key's residues (columns: x along CA->C, y towards N, z = x cross y)."""
    y = np.asarray(key, np.float64)
    n, ca, c = y[:, 0], y[:, 1], y[:, 2]
    e1 = c - ca
    e1_len = np.linalg.norm(e1, axis=-1, keepdims=True)
    u = n - ca
    e1 = e1 / np.where(e1_len > 0, e1_len, 1.0)
    e2 = u - (u * e1).sum(-1, keepdims=True) * e1
    e2_len = np.linalg.norm(e2, axis=-1, keepdims=True)
    if (e1_len < DEGENERATE_NM).any() or (e2_len < DEGENERATE_NM).any():
        i = int(np.flatnonzero((e1_len[:, 0] < DEGENERATE_NM) | (e2_len[:, 0] < DEGENERATE_NM))[0])
        raise MdllmError(f"key frame residue {i}: N, CA, C coincide or are collinear")
    e2 = e2 / e2_len
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1)


def displacements(xyz, key) -> np.ndarray:
    """(F, L, 12) displacement of each residue's N, CA, C, O from the key, in the key residue's frame."""
    z = superpose_on_key(xyz, key)
    rot = key_frames(key)
    d = np.einsum("lji,flaj->flai", rot, z - np.asarray(key, np.float64)[None])
    return d.reshape(d.shape[0], d.shape[1], 12)


def nearest_codes(d, codebook) -> np.ndarray:
    """Index of the nearest code of every 12-vector of ``d`` (..., 12); ties to the smaller index."""
    cb = np.asarray(codebook, np.float64)
    flat = np.asarray(d, np.float64).reshape(-1, 12)
    out = np.empty(len(flat), np.int32)
    for start in range(0, len(flat), 2048):
        chunk = flat[start : start + 2048]
        dist = np.zeros((len(chunk), len(cb)))
        for j in range(12):  # the spec's summation order, so the C++ core rounds the same way
            dist += (chunk[:, None, j] - cb[None, :, j]) ** 2
        out[start : start + 2048] = dist.argmin(axis=1)  # argmin returns the first minimum
    return out.reshape(np.shape(d)[:-1])


def encode_reference(xyz, key, codebook) -> np.ndarray:
    """Frames (F, L, 4, 3) nm -> tokens (F, L) relative to key (L, 4, 3) nm."""
    return nearest_codes(displacements(xyz, key), codebook)


def decode_reference(tokens, key, codebook) -> np.ndarray:
    """Tokens (F, L) -> frames (F, L, 4, 3) nm float32 in the key's coordinates."""
    return place_displacements(np.asarray(codebook, np.float64)[np.asarray(tokens)], key)


def place_displacements(disp, key) -> np.ndarray:
    """Displacements (F, L, 12) nm, each in its key residue's frame -> frames (F, L, 4, 3) nm float32."""
    rot = key_frames(key)
    disp = np.asarray(disp, np.float64).reshape(*np.shape(disp)[:2], 4, 3)
    return (np.asarray(key, np.float64)[None] + np.einsum("lij,flaj->flai", rot, disp)).astype(np.float32)


# --- the tokenizer ----------------------------------------------------------------------------------
class MotionTokenizer:
    """A motion codebook (``models/motiontoken``): encode and decode frames relative to a key frame."""

    kind = "motion"
    needs_key_frame = True

    def __init__(self, cfg, tensors: dict[str, np.ndarray], path: Path, sha256: str, backend: str = "auto"):
        from mdllm.tokenizer.api import compiled_kernels, token_hash

        self.config = cfg
        self.path = path
        self.codebook = tensors["codebook"]
        self.hash = token_hash(cfg, tensors)
        self.file_hash = sha256
        self.backend, self._cpp = compiled_kernels(_core_class(), path, cfg, backend, "numpy")
        self.context_decoder = _load_context_decoder(path)
        self.fine_codes = _load_fine_codes(path, self)
        if self.fine_codes is not None and self._cpp is not None:
            self._cpp.load_fine(str(self.fine_codes.path))

    @classmethod
    def load(cls, path=None, backend: str = "auto") -> "MotionTokenizer":
        from mdllm.tokenizer.api import load_tokenizer

        tok = load_tokenizer(path if path is not None else "motiontoken", backend=backend)
        if not isinstance(tok, cls):
            raise in_file(tok.path, f"a {tok.kind} tokenizer, not a motion tokenizer")
        return tok

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def __repr__(self):
        return f"MotionTokenizer({self.path}, codebook_size={self.codebook_size}, backend={self.backend})"

    def _check(self, xyz, key):
        from mdllm.tokenizer.api import _as_backbone

        xyz = _as_backbone(xyz)
        key = _as_backbone(key)
        if key.shape[0] != 1:
            raise MdllmError(f"the key frame must be one frame, got {key.shape[0]}")
        if key.shape[1] != xyz.shape[1]:
            raise MdllmError(f"frames have {xyz.shape[1]} residues but the key frame has {key.shape[1]}")
        key_frames(key[0])  # refuses a degenerate key residue with its index
        return xyz, np.ascontiguousarray(key[0])

    def encode(self, xyz, key) -> np.ndarray:
        """Frames (F, L, 4, 3) nm (array or Backbone) -> tokens int32 (F, L) relative to ``key``."""
        xyz, key = self._check(xyz, key)
        if self.backend == "numpy":
            return encode_reference(xyz, key, self.codebook)
        out = np.empty(xyz.shape[:2], np.int32)
        self._cpp.encode(xyz, key, xyz.shape[0], xyz.shape[1], out)  # bad input: MdllmError from the core
        return out

    def encode_fine(self, xyz, key) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, fine tokens), both int32 (F, L): the first tokens of :meth:`encode` and the fine stage's
        second token where the first code moves far (mdllm.tokenizer.motion_fine; -1 elsewhere)."""
        if self.fine_codes is None:
            raise in_file(self.path, "this motion tokenizer has no fine codes (mdllm tokenizer train-fine)")
        xyz, key = self._check(xyz, key)
        if self.backend == "numpy":
            tokens = encode_reference(xyz, key, self.codebook)
            return tokens, self.fine_codes.encode(displacements(xyz, key), tokens, self.codebook)
        tokens = np.empty(xyz.shape[:2], np.int32)
        fine = np.empty(xyz.shape[:2], np.int32)
        self._cpp.encode_fine(xyz, key, xyz.shape[0], xyz.shape[1], tokens, fine)
        return tokens, fine

    def code_vectors(self, tokens, fine=None) -> np.ndarray:
        """(F, L, 12) nm float64: each residue's code displacement, c1 (+ c2 where ``fine`` has one)."""
        if fine is None:
            return self.codebook.astype(np.float64)[np.asarray(tokens)]
        if self.fine_codes is None:
            raise in_file(self.path, "fine tokens given, but this motion tokenizer has no fine codes")
        return self.fine_codes.vectors(tokens, self.fine_codes.check(tokens, fine), self.codebook)

    @property
    def decoder_hash(self) -> str:
        """sha256 of what decides the decoded frames: the weights file, the context decoder's and the
        projection's iteration count (mdllm.geometry.projection)."""
        import hashlib

        from mdllm.geometry.projection import ITERATIONS

        context = self.context_decoder.sha256 if self.context_decoder is not None else ""
        return hashlib.sha256(f"{self.file_hash}{context}projection:{ITERATIONS}".encode()).hexdigest()

    def decode(self, tokens, key, sequence: str | None = None, use_context: bool = True, fine=None) -> np.ndarray:
        """Tokens (F, L) or (L,) -> frames float32 (F, L, 4, 3) nm, on the key. With the tokenizer's
        context decoder (and ``use_context``), each residue is decoded from its own and its neighbours'
        tokens (mdllm.tokenizer.motion_context; ``sequence`` gives residues their Ramachandran class);
        otherwise exactly as key + code. ``fine``: the fine tokens of :meth:`encode_fine` (same shape),
        added to the first codes before either decoding."""
        from mdllm.tokenizer.api import _as_backbone, check_token_array

        tokens = check_token_array(tokens, self.codebook_size)
        if fine is not None:
            fine = np.asarray(fine)
            fine = fine[None] if fine.ndim == 1 else fine
        key = _as_backbone(key)
        if key.shape[0] != 1 or key.shape[1] != tokens.shape[1]:
            raise MdllmError(
                f"tokens have {tokens.shape[1]} residues but the key frame has shape {key.shape[1:]} "
                f"({key.shape[0]} frames)"
            )
        key = np.ascontiguousarray(key[0])
        if fine is not None:
            codes = self.code_vectors(tokens, fine)
            if use_context and self.context_decoder is not None:
                codes = codes + self.context_decoder.correction(codes, self.context_decoder.layout(key, sequence))
            return place_displacements(codes, key)
        if use_context and self.context_decoder is not None:
            disp = self.context_decoder.displacements(tokens, self.codebook, key, sequence)
            return place_displacements(disp, key)
        if self.backend == "numpy":
            return decode_reference(tokens, key, self.codebook)
        out = np.empty(tokens.shape + (4, 3), np.float32)
        self._cpp.decode(tokens, key, tokens.shape[0], tokens.shape[1], out)
        return out

    def core_tokenizer(self):
        """The compiled core's tokenizer (``_core.MotionTokenizer``), or None without a compiled core."""
        return self._cpp

    def core_context_decoder(self):
        """The compiled core's twin of the context decoder (``_core.MotionContextDecoder``), or None
        without a context decoder or a compiled core."""
        if self.context_decoder is None or self._cpp is None:
            return None
        from mdllm import _core

        return _core.MotionContextDecoder(str(self.context_decoder.path), self._cpp)

    def zero_token(self) -> int:
        """The code closest to no motion (what the key frame encodes to, residue by residue)."""
        return int(np.argmin((self.codebook.astype(np.float64) ** 2).sum(1)))


def _load_context_decoder(path):
    from mdllm.tokenizer.motion_context import FILE_NAME, ContextDecoder

    file = Path(path) / FILE_NAME
    return ContextDecoder.load(file) if file.exists() else None


def _load_fine_codes(path, first_stage):
    from mdllm.tokenizer.motion_fine import FILE_NAME, FineCodes

    file = Path(path) / FILE_NAME
    return FineCodes.load(file, first_stage) if file.exists() else None


def _core_class():
    try:
        from mdllm import _core
    except ImportError:
        return None
    return getattr(_core, "MotionTokenizer", None)
