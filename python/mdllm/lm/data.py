"""Token files -> training windows.

Token files are read by :mod:`mdllm.tokenfile`, their one owner; this module checks that they fit
one vocabulary and cuts them into training windows.
"""

from __future__ import annotations

from mdllm import tokenfile
from mdllm.errors import MdllmError, in_file
from mdllm.lm.text import Vocabulary
from mdllm.tokenfile import TokenFile


def load_token_files(paths, vocab: Vocabulary | None = None) -> list[TokenFile]:
    """Read token files of single trajectories (F, L); all must come from one tokenizer (and from
    ``vocab``'s, if given)."""
    trajs = [tokenfile.load(p) for p in paths]
    if not trajs:
        raise MdllmError("no token files given")
    ref = vocab or vocabulary_for(trajs[0])
    for t in trajs:
        if t.tokens.ndim != 2:
            raise in_file(
                t.source,
                f"tokens of {t.tokens.shape[0]} walkers; training reads one trajectory (frames, residues) per file",
            )
        ref.check_tokenizer(t.codebook_size, t.tokenizer_hash, source=t.source)
        ref.check_key_tokenizer(t.key_codebook_size, t.key_tokenizer_hash, source=t.source)
        ref.check_fine(t.fine_codebook_size, t.fine_hash, source=t.source)
        if ref.key_codebook_size and t.key_tokens is None:
            raise in_file(t.source, "motion tokens without their key frame (re-encode with `mdllm encode`)")
    return trajs


def vocabulary_for(traj: TokenFile, n_conditioning: int = 8, fine: bool = False) -> Vocabulary:
    """The vocabulary of a new model for tokens like ``traj``'s (with key-frame fold codes for motion tokens;
    with ``fine``, the fine codes the file holds: mdllm.tokenizer.motion_fine)."""
    if fine and traj.fine is None:
        raise in_file(traj.source, "no fine codes in this token file (encode with a tokenizer that has them)")
    return Vocabulary(
        traj.codebook_size,
        traj.tokenizer_hash,
        n_conditioning,
        key_codebook_size=traj.key_codebook_size,
        key_tokenizer_hash=traj.key_tokenizer_hash,
        fine_codebook_size=traj.fine_codebook_size if fine else 0,
        fine_hash=traj.fine_hash if fine else "",
    )


def windows(
    trajs: list[TokenFile], vocab: Vocabulary, window: int, stride: int, val_fraction: float
) -> tuple[list, list]:
    """Cut each trajectory in time: the first (1 - val_fraction) of its frames give training windows,
    the rest validation windows, so no validation frame is ever seen in training. A trajectory with
    fewer frames than ``window`` gives shorter windows (an NMR ensemble or a single structure)."""
    train, val = [], []
    for t in trajs:
        F = t.tokens.shape[0]
        n_val = int(round(F * val_fraction)) if F > 1 else 0
        fine = t.fine if vocab.fine_codebook_size else None  # a model without fine codes reads the first ones
        for lo, hi, out in ((0, F - n_val, train), (F - n_val, F, val)):
            n = hi - lo
            if n == 0:
                continue
            w = min(window, n)
            for start in range(lo, hi - w + 1, stride):
                part = slice(start, start + w)
                out.append(
                    vocab.example(
                        t.sequence, t.tokens[part], key_tokens=t.key_tokens, fine=None if fine is None else fine[part]
                    )
                )
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
        ids[i, : len(x)] = torch.from_numpy(x)
        targets[i, : len(y)] = torch.from_numpy(y)
    return ids, targets
