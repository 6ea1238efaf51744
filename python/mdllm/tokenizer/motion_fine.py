"""Fine codes: a second motion token for the residues whose first code moves far from the key.

One code per residue (K = 4096) resolves thermal motion to 0.2-0.35 Å, but residues that move several Å
from the key (a domain's hinge motion, flapping termini) fall between the few codes spent there. The fine
stage adds a second code, from a residual codebook learnt on the residuals ``d - c1`` of those samples
alone, to every residue whose first code moves more than a threshold (RMS over N, CA, C, O). The first
code decides, so a reader of the tokens knows where a fine token follows without being told. A residue's
code vector is then ``c1 + c2``; it is decoded like a one-code vector (placement, context decoder,
projection). The file (``fine_codes.safetensors`` beside the tokenizer) is tied to the first stage's
token hash; the first stage's tokens, and every language model tied to them, are unchanged by it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file

FILE_NAME = "fine_codes.safetensors"
NO_FINE = -1  # the fine token of a residue whose first code is not followed by one


def first_code_moves_A(codebook) -> np.ndarray:
    """(K,) RMS displacement of each first-stage code over its four atoms, in Å."""
    cb = np.asarray(codebook, np.float64)
    return np.sqrt((cb**2).sum(1) / 4.0) * 10.0


class FineCodes:
    """The fine stage: ``codebook`` (K2, 12) nm and ``follows`` (K1,) bool (which first codes take a fine code)."""

    def __init__(self, codebook, follows, threshold_A: float, first_stage_hash: str, path=None, sha256: str = ""):
        self.codebook = np.asarray(codebook, np.float32)
        self.follows = np.asarray(follows, bool)
        if self.codebook.ndim != 2 or self.codebook.shape[1] != 12 or len(self.codebook) == 0:
            raise MdllmError(f"fine codebook must have shape (K2, 12), got {self.codebook.shape}")
        self.threshold_A = float(threshold_A)
        self.first_stage_hash = first_stage_hash
        self.path = path
        self.sha256 = sha256

    @property
    def size(self) -> int:
        return len(self.codebook)

    @property
    def hash(self) -> str:
        """sha256 of what decides the fine tokens (codes, which first codes take one, the first stage);
        token files and language models with fine codes are tied to it."""
        import hashlib

        digest = hashlib.sha256(self.first_stage_hash.encode())
        digest.update(np.ascontiguousarray(self.codebook, np.float32).tobytes())
        digest.update(np.ascontiguousarray(self.follows, np.uint8).tobytes())
        return digest.hexdigest()

    @classmethod
    def load(cls, path, first_stage) -> "FineCodes":
        """Read ``path``, checked against the first stage (a MotionTokenizer) it was trained for."""
        from mdllm.files import sha256_file
        from mdllm.tokenizer.weights import read_header, read_tensors

        path = Path(path)
        meta, shapes = read_header(path)
        if meta.get("format") != "mdllm-motion-fine":
            raise in_file(path, "not a fine-code file (metadata format is not mdllm-motion-fine)")
        if meta.get("first_stage_hash") != first_stage.hash:
            raise in_file(path, "trained for another first-stage codebook (token hash differs); retrain it")
        tensors = read_tensors(
            path, {"codebook": shapes.get("codebook", (0, 12)), "follows": (first_stage.codebook_size,)}
        )
        return cls(
            tensors["codebook"],
            tensors["follows"] > 0.5,
            float(meta["threshold_A"]),
            meta["first_stage_hash"],
            path,
            sha256_file(path),
        )

    def save(self, path, notes: dict | None = None) -> None:
        import json

        from safetensors.numpy import save_file

        from mdllm.files import atomic_output

        arrays = {"codebook": self.codebook, "follows": self.follows.astype(np.float32)}
        meta = {
            "format": "mdllm-motion-fine",
            "version": "1",
            "threshold_A": repr(self.threshold_A),
            "first_stage_hash": self.first_stage_hash,
        }
        with atomic_output(path) as tmp:
            save_file(arrays, str(tmp), metadata=meta)
        if notes is not None:
            with atomic_output(Path(path).with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps(notes, indent=2) + "\n")

    # --- numpy reference --------------------------------------------------------------------------
    def encode(self, disp, tokens, first_codebook) -> np.ndarray:
        """Fine tokens int32 (F, L) of displacements ``disp`` (F, L, 12) nm whose first tokens are
        ``tokens``: the nearest fine code to the residual where the first code takes one, else NO_FINE."""
        from mdllm.tokenizer.motion import nearest_codes

        tokens = np.asarray(tokens)
        fine = np.full(tokens.shape, NO_FINE, np.int32)
        take = self.follows[tokens]
        if take.any():
            residual = np.asarray(disp, np.float64)[take] - np.asarray(first_codebook, np.float64)[tokens[take]]
            fine[take] = nearest_codes(residual, self.codebook)
        return fine

    def check(self, tokens, fine) -> np.ndarray:
        """``fine`` as int32 of the tokens' shape, refused unless a fine token stands exactly where the
        first token takes one and lies in [0, K2)."""
        fine = np.asarray(fine)
        if fine.shape != np.shape(tokens):
            raise MdllmError(f"fine tokens have shape {fine.shape}, the first tokens {np.shape(tokens)}")
        if fine.size and not np.issubdtype(fine.dtype, np.integer):
            raise MdllmError(f"fine tokens must be integers, got {fine.dtype}")
        take = self.follows[np.asarray(tokens)]
        wrong = np.flatnonzero((take & ((fine < 0) | (fine >= self.size))) | (~take & (fine != NO_FINE)))
        if len(wrong):
            i = np.unravel_index(wrong[0], fine.shape)
            expected = f"a fine token in [0, {self.size})" if take[i] else f"{NO_FINE} (no fine token)"
            raise MdllmError(
                f"fine token at {tuple(int(v) for v in i)} is {int(fine[i])}; its first token wants {expected}"
            )
        return np.ascontiguousarray(fine, np.int32)

    def vectors(self, tokens, fine, first_codebook) -> np.ndarray:
        """(F, L, 12) nm float64 code vectors: c1 + c2 where a fine token stands, else c1."""
        out = np.asarray(first_codebook, np.float64)[np.asarray(tokens)]
        take = np.asarray(fine) >= 0
        out[take] += self.codebook.astype(np.float64)[np.asarray(fine)[take]]
        return out

    def zero_code(self) -> int:
        """The fine code closest to no correction."""
        return int(np.argmin((self.codebook.astype(np.float64) ** 2).sum(1)))


def train_fine_codes(
    trajectories,
    first_stage,
    out,
    codebook_size: int = 1024,
    threshold_A: float = 2.0,
    keys_per_trajectory: int = 8,
    max_samples: int = 400_000,
    iterations: int = 20,
    seed: int = 0,
    sources=None,
    progress: bool = True,
) -> dict:
    """k-means of the residuals of the training displacements whose first code moves more than
    ``threshold_A``; writes ``out`` (a file, or FILE_NAME in a directory). With the first stage's
    trajectories, key frames and seed the samples are the first stage's own (mdllm.tokenizer.motion_train)."""
    from mdllm.tokenizer.motion_train import _assign, by_size, displacement_samples, kmeans

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples = displacement_samples(trajectories, keys_per_trajectory, max_samples, rng)
    first = np.asarray(first_stage.codebook, np.float64)
    t1, _ = _assign(samples, first)
    follows = first_code_moves_A(first) > threshold_A
    residuals = samples[follows[t1]] - first[t1[follows[t1]]]
    if len(residuals) < codebook_size:
        raise MdllmError(
            f"only {len(residuals)} training displacements move more than {threshold_A} Å from their key "
            f"(a fine codebook of {codebook_size} needs more): add MD with larger motions or lower --threshold"
        )
    centres, stats = kmeans(residuals, codebook_size, iterations, rng, progress)
    centres = by_size(centres)  # code 0: the smallest correction
    fine = FineCodes(centres, follows, threshold_A, first_stage.hash)
    path = Path(out)
    if path.is_dir() or not path.suffix:
        path = path / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = {
        "samples": int(len(samples)),
        "fine_samples": int(len(residuals)),
        "first_codes_followed": int(follows.sum()),
        "codebook_size": codebook_size,
        "threshold_A": threshold_A,
        "trajectories": len(trajectories),
        "keys_per_trajectory": keys_per_trajectory,
        "iterations": iterations,
        "seed": seed,
        "minutes": (time.perf_counter() - t0) / 60,
        **stats,
    }
    if sources:
        notes["sources"] = list(sources)
    fine.save(path, notes)
    notes["file"] = str(path)
    return notes
