"""The model's text: which id is which token, and how a trajectory window becomes a token sequence.

Layout of the vocabulary (ids counted from ``offset``, which is 0 for a model trained from scratch and
the base vocabulary size when a Hugging Face checkpoint is extended with our tokens):

    specials      <pad> <s> </s> <frame> <seq> </seq>
    conditioning  <cond_0> ... <cond_{n-1}>      reserved for e.g. temperature bins
    amino acids   A C D E F G H I K L M N P Q R S T V W Y X     (X = unknown residue)
    key fold      <k_0> ... <k_{J-1}>           torsion codes of the key frame (motion models only)
    structure     <t_0> ... <t_{K-1}>           the K codes of the structure tokenizer
    fine          <f_0> ... <f_{K2-1}> <f_none>  fine motion codes (mdllm.tokenizer.motion_fine; none, or K2 + 1)

A training example is

    <s> <seq> a_1 ... a_L </seq> [k_1 ... k_L] [conditioning] t_1,1 ... t_1,L <frame> ... t_W,1 ... t_W,L <frame>

so every frame has exactly as many structure tokens as the prefix has residues, then one frame
separator. With a motion tokenizer the structure codes are displacements from a key frame, and the key
frame's own fold follows the sequence as L torsion codes (``key_codebook_size`` > 0), so that one model
can learn how different folds move. With fine codes (``fine_codebook_size`` > 0) every residue has two
slots, ``t_i,j f_i,j``: its fine token where its first code moves far, else ``<f_none>``. Frames then
all have 2 L + 1 tokens, so the same residue one frame back stays ``frame_span`` positions away, as
without fine codes (positions must stay consecutive token indices in llama.cpp; a first try with fine
tokens only where a code takes one gave frames of varying length, and a BBA fine-tune of that model
moved twice as much as its MD). ``<f_none>`` is given, never drawn: the first code decides it, so the
loss is not taken on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mdllm.errors import MdllmError

SPECIALS = ("<pad>", "<s>", "</s>", "<frame>", "<seq>", "</seq>")
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
UNKNOWN_RESIDUE = "X"

# Loss is not taken on targets marked with this value (torch's cross_entropy default).
IGNORE = -100


def residue_count(ids, amino_acid_offset: int):
    """Amino-acid tokens (the residues of the prompt's sequence) along the last axis of ids (numpy or torch)."""
    return ((ids >= amino_acid_offset) & (ids < amino_acid_offset + len(AMINO_ACIDS + UNKNOWN_RESIDUE))).sum(-1)


def frame_position_scale(frame_span: int, residues, tokens_per_residue: int = 1):
    """Rotary position scale of a frame-span model (ModelConfig.frame_span) for frames of ``residues``
    residues of ``tokens_per_residue`` tokens each + separator: one frame then spans ``frame_span``
    positions (llama.cpp's rope_freq_scale)."""
    return frame_span / (tokens_per_residue * residues + 1)


@dataclass(frozen=True)
class Vocabulary:
    """Token ids of one model; tied to one structure tokenizer by (codebook_size, tokenizer_hash)."""

    codebook_size: int
    tokenizer_hash: str
    n_conditioning: int = 8
    offset: int = 0
    key_codebook_size: int = 0  # torsion codes describing the key frame in the prompt (0: no key frame)
    key_tokenizer_hash: str = ""
    fine_codebook_size: int = 0  # fine motion codes after a first code that moves far (0: none)
    fine_hash: str = ""

    def __post_init__(self):
        if self.codebook_size < 1:
            raise MdllmError(f"codebook size must be positive, got {self.codebook_size}")
        if not self.tokenizer_hash:
            raise MdllmError("a vocabulary needs the hash of its structure tokenizer")
        if self.key_codebook_size and not self.key_tokenizer_hash:
            raise MdllmError("a vocabulary with key-frame fold codes needs the hash of their tokenizer")
        if self.fine_codebook_size and not self.fine_hash:
            raise MdllmError("a vocabulary with fine codes needs the hash of their fine stage")

    # --- ids -----------------------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return self.offset + 0

    @property
    def bos_id(self) -> int:
        return self.offset + 1

    @property
    def eos_id(self) -> int:
        return self.offset + 2

    @property
    def frame_id(self) -> int:
        return self.offset + 3

    @property
    def seq_start_id(self) -> int:
        return self.offset + 4

    @property
    def seq_end_id(self) -> int:
        return self.offset + 5

    @property
    def conditioning_offset(self) -> int:
        return self.offset + len(SPECIALS)

    @property
    def amino_acid_offset(self) -> int:
        return self.conditioning_offset + self.n_conditioning

    @property
    def key_offset(self) -> int:
        return self.amino_acid_offset + len(AMINO_ACIDS) + 1

    @property
    def structure_offset(self) -> int:
        return self.key_offset + self.key_codebook_size

    @property
    def fine_offset(self) -> int:
        return self.structure_offset + self.codebook_size

    @property
    def fine_none_id(self) -> int:
        """``<f_none>``: the fine slot of a residue whose first code takes no fine code (fine models)."""
        if not self.fine_codebook_size:
            raise MdllmError("this vocabulary has no fine codes")
        return self.fine_offset + self.fine_codebook_size

    @property
    def tokens_per_residue(self) -> int:
        """Tokens of one residue in a frame: its structure token, and with fine codes its fine slot."""
        return 2 if self.fine_codebook_size else 1

    @property
    def size(self) -> int:
        """Total number of ids, including the ``offset`` ids of a base vocabulary."""
        return self.fine_offset + (self.fine_codebook_size + 1 if self.fine_codebook_size else 0)

    def conditioning_id(self, slot: int) -> int:
        if not 0 <= slot < self.n_conditioning:
            raise MdllmError(f"conditioning slot {slot} outside 0..{self.n_conditioning - 1}")
        return self.conditioning_offset + slot

    # --- strings -------------------------------------------------------------------------------
    def token_strings(self) -> list[str]:
        """One string per id from ``offset`` on (the base vocabulary's strings are not ours)."""
        return (
            list(SPECIALS)
            + [f"<cond_{i}>" for i in range(self.n_conditioning)]
            + list(AMINO_ACIDS)
            + [UNKNOWN_RESIDUE]
            + [f"<k_{i}>" for i in range(self.key_codebook_size)]
            + [f"<t_{i}>" for i in range(self.codebook_size)]
            + [f"<f_{i}>" for i in range(self.fine_codebook_size)]
            + (["<f_none>"] if self.fine_codebook_size else [])
        )

    # --- encoding ------------------------------------------------------------------------------
    def sequence_ids(self, sequence: str) -> np.ndarray:
        """Amino-acid ids of a one-letter sequence; anything not among the 20 becomes X."""
        lookup = {aa: self.amino_acid_offset + i for i, aa in enumerate(AMINO_ACIDS)}
        unknown = self.amino_acid_offset + len(AMINO_ACIDS)
        return np.array([lookup.get(c, unknown) for c in sequence.upper()], dtype=np.int64)

    def prefix(self, sequence: str, conditioning: tuple[int, ...] = (), key_tokens=None) -> np.ndarray:
        """``<s> <seq> residues </seq> [key fold codes] [conditioning]``: the context before the first frame."""
        parts = [[self.bos_id, self.seq_start_id], self.sequence_ids(sequence), [self.seq_end_id]]
        if self.key_codebook_size:
            if key_tokens is None:
                raise MdllmError("this model's prompt holds the key frame's fold codes; none were given")
            key_tokens = np.asarray(key_tokens).reshape(-1)
            if len(key_tokens) != len(sequence):
                raise MdllmError(f"{len(key_tokens)} key-frame fold codes for {len(sequence)} residues")
            if key_tokens.min() < 0 or key_tokens.max() >= self.key_codebook_size:
                raise MdllmError(f"key-frame fold code outside 0..{self.key_codebook_size - 1}")
            parts.append(key_tokens.astype(np.int64) + self.key_offset)
        parts.append([self.conditioning_id(c) for c in conditioning])
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])

    def frames(self, tokens: np.ndarray, fine=None) -> np.ndarray:
        """(W, L) structure codes -> W * (L + 1) ids, each frame closed by the frame separator; with
        ``fine`` (W, L) fine codes (-1: none) W * (2 L + 1) ids, each residue's fine token (or
        ``<f_none>``) after its structure token."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise MdllmError(f"structure tokens must have shape (frames, residues), got {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.codebook_size):
            raise MdllmError(
                f"structure token outside 0..{self.codebook_size - 1} (min {tokens.min()}, max {tokens.max()})"
            )
        if bool(self.fine_codebook_size) != (fine is not None):
            raise MdllmError(
                "this model's frames hold fine codes; none were given (encode with the fine stage)"
                if self.fine_codebook_size
                else "fine codes given to a model without them"
            )
        ids = tokens.astype(np.int64) + self.structure_offset
        sep = np.full((tokens.shape[0], 1), self.frame_id, dtype=np.int64)
        if fine is None:
            return np.concatenate([ids, sep], axis=1).reshape(-1)
        fine = np.asarray(fine)
        if fine.shape != tokens.shape or (fine.size and (fine.min() < -1 or fine.max() >= self.fine_codebook_size)):
            raise MdllmError(f"fine codes of shape {fine.shape} outside -1..{self.fine_codebook_size - 1}")
        slots = np.where(fine >= 0, fine.astype(np.int64) + self.fine_offset, self.fine_none_id)
        pairs = np.stack([ids, slots], axis=-1).reshape(len(ids), -1)
        return np.concatenate([pairs, sep], axis=1).reshape(-1)

    def example(
        self, sequence: str, tokens: np.ndarray, conditioning: tuple[int, ...] = (), key_tokens=None, fine=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(input ids, targets) of one training window; the loss is taken on frames only, since the
        prefix is given by the user at generation time (and not on ``<f_none>``, which the first code
        decides)."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != len(sequence):
            raise MdllmError(
                f"frames have {tokens.shape[-1]} residue tokens but the sequence has {len(sequence)} residues"
            )
        prefix = self.prefix(sequence, conditioning, key_tokens)
        ids = np.concatenate([prefix, self.frames(tokens, fine)])
        targets = ids.copy()
        targets[: len(prefix)] = IGNORE
        if self.fine_codebook_size:
            targets[ids == self.fine_none_id] = IGNORE
        return ids, targets

    def decode_frames(self, ids: np.ndarray, n_residues: int) -> np.ndarray:
        """Ids of whole frames (each L structure ids + separator) -> (W, L) structure codes."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, n_residues + 1)
        if not np.all(ids[:, -1] == self.frame_id):
            raise MdllmError("frame does not end with the frame separator")
        codes = ids[:, :-1] - self.structure_offset
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise MdllmError("frame holds a token that is not a structure token")
        return codes.astype(np.int32)

    # --- identity ------------------------------------------------------------------------------
    def check_tokenizer(self, codebook_size: int, tokenizer_hash: str, source: str = "tokens") -> None:
        """Refuse structure tokens made by another tokenizer than the one this model knows."""
        if int(codebook_size) != self.codebook_size or str(tokenizer_hash) != self.tokenizer_hash:
            raise MdllmError(
                f"{source}: made by tokenizer {str(tokenizer_hash)[:12]} (K={codebook_size}) but the model "
                f"was trained with tokenizer {self.tokenizer_hash[:12]} (K={self.codebook_size})"
            )

    def check_fine(self, codebook_size: int, fine_hash: str, source: str = "tokens") -> None:
        """Refuse fine codes of another fine stage than this model's (or none where it needs them)."""
        if not self.fine_codebook_size:
            return
        if int(codebook_size) != self.fine_codebook_size or str(fine_hash) != self.fine_hash:
            raise MdllmError(
                f"{source}: fine codes from stage {str(fine_hash)[:12] or 'none'} (K2={codebook_size}) but the "
                f"model knows {self.fine_hash[:12]} (K2={self.fine_codebook_size}); encode with its tokenizer"
            )

    def check_key_tokenizer(self, codebook_size: int, tokenizer_hash: str, source: str = "tokens") -> None:
        """Refuse key-frame fold codes made by another torsion tokenizer than this model's."""
        if not self.key_codebook_size:
            return
        if int(codebook_size) != self.key_codebook_size or str(tokenizer_hash) != self.key_tokenizer_hash:
            raise MdllmError(
                f"{source}: key-frame fold codes from tokenizer {str(tokenizer_hash)[:12]} (K={codebook_size}) "
                f"but the model knows {self.key_tokenizer_hash[:12]} (K={self.key_codebook_size})"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            size=self.size,
            specials=list(SPECIALS),
            amino_acids=AMINO_ACIDS + UNKNOWN_RESIDUE,
            conditioning_offset=self.conditioning_offset,
            amino_acid_offset=self.amino_acid_offset,
            structure_offset=self.structure_offset,
            fine_offset=self.fine_offset,
            frame_id=self.frame_id,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        vocab = cls(
            codebook_size=int(d["codebook_size"]),
            tokenizer_hash=str(d["tokenizer_hash"]),
            n_conditioning=int(d.get("n_conditioning", 8)),
            offset=int(d.get("offset", 0)),
            key_codebook_size=int(d.get("key_codebook_size", 0)),
            key_tokenizer_hash=str(d.get("key_tokenizer_hash", "")),
            fine_codebook_size=int(d.get("fine_codebook_size", 0)),
            fine_hash=str(d.get("fine_hash", "")),
        )
        if "size" in d and int(d["size"]) != vocab.size:
            raise MdllmError(f"vocabulary layout says {d['size']} ids but it has {vocab.size}")
        return vocab
