"""Token files -> training windows.

A token file is the ``.npz`` that ``mdllm encode`` writes: ``tokens`` int32 (F, L), ``sequence`` (str,
L one-letter codes), ``tokenizer_hash`` (str) and ``codebook_size`` (int). Motion tokens add their key
frame: ``key_xyz`` float32 (L, 4, 3) nm, and its fold as torsion codes ``key_tokens`` int32 (L,) with
``key_tokenizer_hash`` and ``key_codebook_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file
from mdllm.lm.text import Vocabulary

REQUIRED_KEYS = ("tokens", "sequence", "tokenizer_hash", "codebook_size")


@dataclass
class TokenTrajectory:
    tokens: np.ndarray  # int32 (F, L)
    sequence: str
    tokenizer_hash: str
    codebook_size: int
    source: str
    key_xyz: np.ndarray | None = None  # (L, 4, 3) nm: the key frame of motion tokens
    key_tokens: np.ndarray | None = None  # (L,) torsion codes of the key frame
    key_tokenizer_hash: str = ""
    key_codebook_size: int = 0
    extra: dict | None = None  # residue_ids, chain_ids, time when the file has them


KEY_KEYS = ("key_xyz", "key_tokens", "key_tokenizer_hash", "key_codebook_size")


def save_token_file(path, tokens, sequence: str, tokenizer_hash: str, codebook_size: int, key_xyz=None,
                    key_tokens=None, key_tokenizer_hash: str = "", key_codebook_size: int = 0, **extra) -> None:
    """Write a token file in the agreed layout (atomically); ``extra`` arrays (residue_ids, chain_ids,
    time) are stored beside."""
    from mdllm.files import atomic_output

    arrays = dict(tokens=np.asarray(tokens, dtype=np.int32), sequence=np.array(sequence),
                  tokenizer_hash=np.array(tokenizer_hash), codebook_size=np.array(int(codebook_size)))
    if key_xyz is not None:
        arrays.update(key_xyz=np.asarray(key_xyz, np.float32), key_tokens=np.asarray(key_tokens, np.int32),
                      key_tokenizer_hash=np.array(key_tokenizer_hash), key_codebook_size=np.array(int(key_codebook_size)))
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_token_file(path) -> TokenTrajectory:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in REQUIRED_KEYS if k not in z.files]
            if missing:
                raise in_file(path, f"token file lacks {', '.join(missing)}")
            traj = TokenTrajectory(tokens=np.asarray(z["tokens"]), sequence=str(z["sequence"]),
                                   tokenizer_hash=str(z["tokenizer_hash"]),
                                   codebook_size=int(z["codebook_size"]), source=str(path))
            if "key_xyz" in z.files:
                missing = [k for k in KEY_KEYS if k not in z.files]
                if missing:
                    raise in_file(path, f"token file has a key frame but lacks {', '.join(missing)}")
                traj.key_xyz = np.asarray(z["key_xyz"], np.float32)
                traj.key_tokens = np.asarray(z["key_tokens"])
                traj.key_tokenizer_hash = str(z["key_tokenizer_hash"])
                traj.key_codebook_size = int(z["key_codebook_size"])
            traj.extra = {k: np.asarray(z[k]) for k in ("residue_ids", "chain_ids", "time") if k in z.files}
    except (OSError, ValueError) as exc:
        if isinstance(exc, MdllmError):
            raise
        raise in_file(path, f"not a readable token file ({exc})") from None
    t = traj.tokens
    if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
        raise in_file(path, f"tokens must be integer (frames, residues), got {t.dtype} {t.shape}")
    if t.shape[1] != len(traj.sequence):
        raise in_file(path, f"{t.shape[1]} tokens per frame but sequence has {len(traj.sequence)} residues")
    if t.size and (t.min() < 0 or t.max() >= traj.codebook_size):
        raise in_file(path, f"token outside 0..{traj.codebook_size - 1}")
    if traj.key_xyz is not None and (traj.key_xyz.shape != (t.shape[1], 4, 3) or traj.key_tokens.shape != (t.shape[1],)):
        raise in_file(path, f"key frame {traj.key_xyz.shape} / fold codes {traj.key_tokens.shape} do not match "
                            f"{t.shape[1]} residues")
    return traj


def load_token_files(paths, vocab: Vocabulary | None = None) -> list[TokenTrajectory]:
    """Read token files; all must come from one tokenizer (and from ``vocab``'s, if given)."""
    trajs = [load_token_file(p) for p in paths]
    if not trajs:
        raise MdllmError("no token files given")
    ref = vocab or vocabulary_for(trajs[0])
    for t in trajs:
        ref.check_tokenizer(t.codebook_size, t.tokenizer_hash, source=t.source)
        ref.check_key_tokenizer(t.key_codebook_size, t.key_tokenizer_hash, source=t.source)
        if ref.key_codebook_size and t.key_tokens is None:
            raise in_file(t.source, "motion tokens without their key frame (re-encode with `mdllm encode`)")
    return trajs


def vocabulary_for(traj: TokenTrajectory, n_conditioning: int = 8) -> Vocabulary:
    """The vocabulary of a new model for tokens like ``traj``'s (with key-frame fold codes for motion tokens)."""
    return Vocabulary(traj.codebook_size, traj.tokenizer_hash, n_conditioning,
                      key_codebook_size=traj.key_codebook_size, key_tokenizer_hash=traj.key_tokenizer_hash)


def windows(trajs: list[TokenTrajectory], vocab: Vocabulary, window: int, stride: int,
            val_fraction: float) -> tuple[list, list]:
    """Cut each trajectory in time: the first (1 - val_fraction) of its frames give training windows,
    the rest validation windows, so no validation frame is ever seen in training. A trajectory with
    fewer frames than ``window`` gives shorter windows (an NMR ensemble or a single structure)."""
    train, val = [], []
    for t in trajs:
        F = t.tokens.shape[0]
        n_val = int(round(F * val_fraction)) if F > 1 else 0
        for part, out in ((t.tokens[:F - n_val], train), (t.tokens[F - n_val:], val)):
            n = part.shape[0]
            if n == 0:
                continue
            w = min(window, n)
            for start in range(0, n - w + 1, stride):
                out.append(vocab.example(t.sequence, part[start:start + w], key_tokens=t.key_tokens))
    return train, val


def collate(examples, pad_id: int):
    """Right-pad to the longest example. With causal attention, padding after a sequence never
    influences its real tokens, so no attention mask is needed; padded targets are ignored."""
    import torch

    from mdllm.lm.text import IGNORE

    n = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), n), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.from_numpy(x)
        targets[i, :len(y)] = torch.from_numpy(y)
    return ids, targets
