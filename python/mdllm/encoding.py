"""Trajectories -> token files: the one path that ``mdllm encode``, ``mdllm run`` and the recipes share.

With a motion tokenizer every frame is encoded relative to a key frame (the start structure, a frame
the user names, or by default the trajectory's first frame); the token file then also holds the key
frame and its fold as torsion codes, which the language model reads in its prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdllm.errors import MdllmError
from mdllm.io import Backbone, load_backbone
from mdllm.tokenfile import TokenFile

DEFAULT_TOKENIZER = "motiontoken"


@dataclass
class Encoded:
    tokens: np.ndarray  # (F, L) int32
    backbone: Backbone
    tokenizer: object
    key_xyz: np.ndarray | None = None  # (L, 4, 3) nm
    key_tokens: np.ndarray | None = None  # (L,) torsion codes of the key
    fold_tokenizer: object = None
    fine: np.ndarray | None = None  # (F, L) fine codes of a motion tokenizer with them (-1: none)

    def token_file(self) -> TokenFile:
        bb = self.backbone
        tf = TokenFile(
            self.tokens,
            bb.sequence,
            self.tokenizer.hash,
            self.tokenizer.codebook_size,
            residue_ids=bb.residue_ids,
            chain_ids=bb.chain_ids,
            time=bb.time,
        )
        if self.key_xyz is not None:
            tf.key_xyz, tf.key_tokens = self.key_xyz, self.key_tokens
            tf.key_tokenizer_hash, tf.key_codebook_size = self.fold_tokenizer.hash, self.fold_tokenizer.codebook_size
        if self.fine is not None:
            fine = self.tokenizer.fine_codes
            tf.fine, tf.fine_hash, tf.fine_codebook_size = self.fine, fine.hash, fine.size
        return tf

    def save(self, path) -> None:
        self.token_file().save(path)


def load_tokenizers(tokenizer=None, fold_tokenizer=None):
    """(structure tokenizer, torsion tokenizer for the key frame's fold or None); defaults: the shipped
    motion tokenizer and the shipped torsion tokenizer."""
    from mdllm.tokenizer.api import load_tokenizer
    from mdllm.tokenizer.motion import MotionTokenizer
    from mdllm.tokenizer.torsion import TorsionTokenizer

    loaded = (TorsionTokenizer, MotionTokenizer)
    tok = tokenizer if isinstance(tokenizer, loaded) else load_tokenizer(tokenizer or DEFAULT_TOKENIZER)
    fold = None
    if tok.needs_key_frame:
        fold = fold_tokenizer if isinstance(fold_tokenizer, loaded) else load_tokenizer(fold_tokenizer)
        if fold.kind != "torsion":
            raise MdllmError(f"{fold.path}: the key frame's fold is described by a torsion tokenizer, not {fold.kind}")
    return tok, fold


def as_key(key, like: Backbone) -> np.ndarray:
    """The key frame (L, 4, 3) nm from a Backbone, an array or a structure file; its residues must be
    the trajectory's."""
    if key is None:
        return like.xyz[0]
    if not isinstance(key, (Backbone, np.ndarray)):
        key = load_backbone(key)
    if isinstance(key, Backbone):
        if key.n_residues != like.n_residues or key.sequence != like.sequence:
            raise MdllmError(
                f"{key.source}: key frame has {key.n_residues} residues ({key.sequence[:20]}...), "
                f"the trajectory {like.n_residues} ({like.sequence[:20]}...)"
            )
        key = key.xyz[-1]
    key = np.asarray(key, np.float32)
    if key.shape != (like.n_residues, 4, 3):
        raise MdllmError(f"key frame of shape {key.shape} for a trajectory of {like.n_residues} residues")
    return key


def encode_backbone(bb: Backbone, tokenizer=None, key=None, fold_tokenizer=None) -> Encoded:
    """Tokens of every frame of ``bb``; ``key`` (motion kind): Backbone, array or file, default frame 0."""
    tok, fold = load_tokenizers(tokenizer, fold_tokenizer)
    if not tok.needs_key_frame:
        return Encoded(tok.encode(bb), bb, tok)
    key_xyz = as_key(key, bb)
    fold_tokens = fold.encode(key_xyz[None])[0]
    if tok.fine_codes is None:
        return Encoded(tok.encode(bb.xyz, key_xyz), bb, tok, key_xyz, fold_tokens, fold)
    tokens, fine = tok.encode_fine(bb.xyz, key_xyz)
    return Encoded(tokens, bb, tok, key_xyz, fold_tokens, fold, fine)


def decode_tokens(
    tokenizer, tokens, key_xyz=None, project: bool = True, sequence: str | None = None, fine=None
) -> np.ndarray:
    """Tokens (..., L) -> backbones (..., L, 4, 3) nm. Motion tokens are decoded on ``key_xyz`` (by the
    tokenizer's context decoder when it has one, which reads residue classes from ``sequence``; with their
    ``fine`` codes, same shape, when given) and, with ``project``, brought to the key's local geometry
    (mdllm.geometry.projection)."""
    tokens = np.asarray(tokens)
    flat = tokens.reshape(-1, tokens.shape[-1])
    if not tokenizer.needs_key_frame:
        return tokenizer.decode(flat).reshape(*tokens.shape, 4, 3)
    fine = None if fine is None else np.asarray(fine).reshape(flat.shape)
    xyz = tokenizer.decode(flat, key_xyz[None], sequence, fine=fine)
    if project:
        from mdllm.geometry.projection import project_to_key_geometry

        xyz = project_to_key_geometry(xyz, key_xyz)
    return xyz.reshape(*tokens.shape, 4, 3)


def encode_file(
    traj, out, top=None, stride: int = 1, chain=None, tokenizer=None, key=None, fold_tokenizer=None
) -> Encoded:
    """``mdllm encode``: read a trajectory, encode it and write the token file ``out`` (.npz)."""
    from mdllm.errors import in_file

    if not str(out).endswith(".npz"):
        raise in_file(out, "the token file must end in .npz")
    bb = load_backbone(traj, top=top, stride=stride, chain=chain)
    encoded = encode_backbone(bb, tokenizer, key, fold_tokenizer)
    encoded.save(out)
    return encoded


def decode_file(tokens_path, out, tokenizer=None, project: bool = True) -> list:
    """``mdllm decode``: a token file back to backbones (``out``: any format ``mdllm.io.save`` writes).
    Default tokenizer: the shipped motion tokenizer for a file with a key frame, else the torsion one.
    Motion tokens are projected onto the key frame's local geometry unless ``project`` is False. The
    walkers of a file from ``mdllm generate`` come one after another, every frame, valid or not."""
    from mdllm import tokenfile
    from mdllm.errors import in_file
    from mdllm.io import save
    from mdllm.tokenizer.api import load_tokenizer

    traj = tokenfile.load(tokens_path)
    tok = load_tokenizer(tokenizer if tokenizer else (DEFAULT_TOKENIZER if traj.key_xyz is not None else None))
    if traj.tokenizer_hash != tok.hash:
        raise in_file(
            tokens_path,
            f"was made by tokenizer {traj.tokenizer_hash[:12]}, not by {tok.hash[:12]} (pass the matching --tokenizer)",
        )
    fine = None
    if traj.fine is not None and getattr(tok, "fine_codes", None) is not None:
        if traj.fine_hash != tok.fine_codes.hash:
            raise in_file(tokens_path, f"fine codes from stage {traj.fine_hash[:12]}, not the tokenizer's own")
        fine = traj.fine_frames
    try:
        xyz = decode_tokens(tok, traj.frames, traj.key_xyz, project, traj.sequence, fine)
    except MdllmError as exc:
        raise in_file(tokens_path, str(exc)) from None
    n_frames, n_res = xyz.shape[:2]
    time = traj.time if traj.time is not None and len(traj.time) == n_frames else np.arange(n_frames, dtype=np.float64)
    bb = Backbone(
        xyz,
        traj.sequence,
        traj.residue_ids if traj.residue_ids is not None else np.arange(1, n_res + 1),
        traj.chain_ids if traj.chain_ids is not None else np.full(n_res, "A"),
        time,
    )
    return save(bb, out)
