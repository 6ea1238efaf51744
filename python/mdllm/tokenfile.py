"""The token file: the one reader and writer of the ``.npz`` that ``mdllm encode`` and ``mdllm generate``
write and that training, decoding and evaluation read.

Layout (numpy ``.npz``, no pickles):

==================== ================= ==================================================================
key                  dtype, shape      meaning
==================== ================= ==================================================================
tokens               int32 (F, L)      structure codes; (W, F, L) for the walkers of ``mdllm generate``
sequence             str               one-letter codes, length L
tokenizer_hash       str               hash of the structure tokenizer that made ``tokens``
codebook_size        int               its codebook size
key_xyz              float32 (L, 4, 3) motion tokens: the key frame (nm) they are displacements from
key_tokens           int32 (L,)        the key frame's fold as torsion codes (with the two keys below)
key_tokenizer_hash   str               hash of the torsion tokenizer of ``key_tokens``
key_codebook_size    int               its codebook size
fine                 int32 like tokens motion tokens: fine codes (-1: none; mdllm.tokenizer.motion_fine)
fine_hash            str               hash of the fine stage of ``fine``
fine_codebook_size   int               its codebook size
residue_ids          int (L,)          optional: residue numbers
chain_ids            str (L,)          optional: chain of each residue
time                 float64 (F,)      optional: time of each frame (ps)
token_logprobs       float32 (W, F, L + 1)  generation: log-probability of each chosen token and separator
fine_logprobs        float32 (W, F, L)  generation with fine codes: log-probability of each fine token (0: none)
loglik               float32 (W, F)    generation: per-frame log-likelihood
valid                bool (W, F)       generation: frames that passed the checks (the trajectory written)
redraws              int32 (W, F)      generation: draws of each frame the guard rejected
==================== ================= ==================================================================

Files written before ``tokenfile`` existed have the same keys and load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file

REQUIRED = ("tokens", "sequence", "tokenizer_hash", "codebook_size")
KEY_FOLD = ("key_tokens", "key_tokenizer_hash", "key_codebook_size")  # all or none, and only with key_xyz
FINE = ("fine", "fine_hash", "fine_codebook_size")  # all or none
OPTIONAL_ARRAYS = (
    "key_xyz",
    "residue_ids",
    "chain_ids",
    "time",
    "token_logprobs",
    "fine_logprobs",
    "loglik",
    "valid",
    "redraws",
)


@dataclass
class TokenFile:
    tokens: np.ndarray  # int32 (F, L), or (W, F, L) from generation
    sequence: str
    tokenizer_hash: str
    codebook_size: int
    source: str = ""  # the file it was read from
    key_xyz: np.ndarray | None = None  # (L, 4, 3) nm: the key frame of motion tokens
    key_tokens: np.ndarray | None = None  # (L,) torsion codes of the key frame
    key_tokenizer_hash: str = ""
    key_codebook_size: int = 0
    fine: np.ndarray | None = None  # like tokens: fine codes, -1 where a residue has none
    fine_hash: str = ""
    fine_codebook_size: int = 0
    residue_ids: np.ndarray | None = None
    chain_ids: np.ndarray | None = None
    time: np.ndarray | None = None  # (F,) ps
    token_logprobs: np.ndarray | None = None
    fine_logprobs: np.ndarray | None = None
    loglik: np.ndarray | None = None
    valid: np.ndarray | None = None
    redraws: np.ndarray | None = None

    @property
    def n_residues(self) -> int:
        return int(self.tokens.shape[-1])

    @property
    def frames(self) -> np.ndarray:
        """Tokens as (frames, L): the walkers of a generated file one after another."""
        return self.tokens.reshape(-1, self.n_residues)

    @property
    def fine_frames(self) -> np.ndarray | None:
        """Fine codes as (frames, L) like :attr:`frames`, or None."""
        return None if self.fine is None else self.fine.reshape(-1, self.n_residues)

    def kept_loglik(self) -> np.ndarray | None:
        """Per-frame log-likelihoods of the frames in the trajectory written beside (walker-major; only
        the valid ones when the file has a validity mask), or None."""
        if self.loglik is None:
            return None
        ll = np.asarray(self.loglik, np.float64)
        if self.valid is not None and self.valid.shape == ll.shape:
            return ll[self.valid]
        return ll.reshape(-1)

    def save(self, path, compress: bool = False) -> Path:
        """Write atomically (temporary file, then rename), after the checks :func:`load` makes: a
        file that could not be read back is never written."""
        from mdllm.files import atomic_output

        path = Path(path)
        _check(self, path)

        arrays = dict(
            tokens=np.asarray(self.tokens, np.int32),
            sequence=np.array(self.sequence),
            tokenizer_hash=np.array(self.tokenizer_hash),
            codebook_size=np.array(int(self.codebook_size)),
        )
        if self.key_tokens is not None:
            arrays.update(
                key_tokens=np.asarray(self.key_tokens, np.int32),
                key_tokenizer_hash=np.array(self.key_tokenizer_hash),
                key_codebook_size=np.array(int(self.key_codebook_size)),
            )
        if self.fine is not None:
            arrays.update(
                fine=np.asarray(self.fine, np.int32),
                fine_hash=np.array(self.fine_hash),
                fine_codebook_size=np.array(int(self.fine_codebook_size)),
            )
        for name in OPTIONAL_ARRAYS:
            value = getattr(self, name)
            if value is not None:
                arrays[name] = np.asarray(value, np.float32) if name == "key_xyz" else np.asarray(value)
        with atomic_output(path) as tmp:
            with open(tmp, "wb") as fh:
                (np.savez_compressed if compress else np.savez)(fh, **arrays)
        return path


def load(path) -> TokenFile:
    """Read and check a token file; any problem is an :class:`MdllmError` that names the file."""
    path = Path(path)
    if not path.is_file():
        raise in_file(path, "no such token file")
    try:
        with np.load(path, allow_pickle=False) as z:
            present = set(z.files)
            missing = [k for k in REQUIRED if k not in present]
            if missing:
                raise in_file(path, f"not a token file: lacks {', '.join(missing)}")
            names = {f.name for f in fields(TokenFile)}
            values = {k: np.asarray(z[k]) for k in present if k in names}
    except (OSError, ValueError, EOFError) as exc:
        if isinstance(exc, MdllmError):
            raise
        raise in_file(path, f"not a readable token file ({exc})") from None
    try:
        tf = TokenFile(
            tokens=values.pop("tokens"),
            sequence=str(values.pop("sequence")),
            tokenizer_hash=str(values.pop("tokenizer_hash")),
            codebook_size=int(values.pop("codebook_size")),
            source=str(path),
        )
        fold = [k for k in KEY_FOLD if k in values]
        if fold and (len(fold) != len(KEY_FOLD) or "key_xyz" not in values):
            lacking = [k for k in ("key_xyz",) + KEY_FOLD if k not in values]
            raise in_file(path, f"token file has a key frame but lacks {', '.join(lacking)}")
        if fold:
            tf.key_tokens = values.pop("key_tokens")
            tf.key_tokenizer_hash = str(values.pop("key_tokenizer_hash"))
            tf.key_codebook_size = int(values.pop("key_codebook_size"))
        fine = [k for k in FINE if k in values]
        if fine and len(fine) != len(FINE):
            raise in_file(path, f"token file has fine codes but lacks {', '.join(k for k in FINE if k not in values)}")
        if fine:
            tf.fine = values.pop("fine")
            tf.fine_hash = str(values.pop("fine_hash"))
            tf.fine_codebook_size = int(values.pop("fine_codebook_size"))
        for name, value in values.items():
            setattr(tf, name, value)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, MdllmError):
            raise
        raise in_file(path, f"malformed token file ({exc})") from None
    _check(tf, path)
    if tf.key_xyz is not None:
        tf.key_xyz = np.asarray(tf.key_xyz, np.float32)
    return tf


def _check(tf: TokenFile, path) -> None:
    t = np.asarray(tf.tokens)
    if t.ndim not in (2, 3) or not np.issubdtype(t.dtype, np.integer):
        raise in_file(path, f"tokens must be integer (frames, residues), got {t.dtype} {t.shape}")
    L = t.shape[-1]
    if L != len(tf.sequence):
        raise in_file(path, f"{L} tokens per frame but sequence has {len(tf.sequence)} residues")
    if t.size and (t.min() < 0 or t.max() >= tf.codebook_size):
        raise in_file(path, f"token outside 0..{tf.codebook_size - 1}")
    if tf.fine is not None:
        fine = np.asarray(tf.fine)
        if fine.shape != t.shape or not np.issubdtype(fine.dtype, np.integer):
            raise in_file(path, f"fine codes of {fine.dtype} {fine.shape} do not match tokens {t.shape}")
        if fine.size and (fine.min() < -1 or fine.max() >= tf.fine_codebook_size):
            raise in_file(path, f"fine code outside -1..{tf.fine_codebook_size - 1}")
    expected = {
        "key_xyz": (L, 4, 3),
        "key_tokens": (L,),
        "residue_ids": (L,),
        "chain_ids": (L,),
        "time": t.shape[-2:-1],
        "loglik": t.shape[:-1],
        "valid": t.shape[:-1],
        "redraws": t.shape[:-1],
        "fine_logprobs": t.shape,
    }
    for name, shape in expected.items():
        value = getattr(tf, name)
        if value is not None and np.shape(value) != shape:
            raise in_file(path, f"{name} of shape {np.shape(value)} does not match tokens {t.shape}")
