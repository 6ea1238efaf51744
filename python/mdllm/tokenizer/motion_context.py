"""The context decoder of motion tokens: each residue decoded from its own code and its neighbours'.

A motion token is the nearest of K codes to a residue's displacement, so on its own it carries the
code's quantisation error (0.44 Å rms on the training frames), independent from residue to residue,
while real displacements vary smoothly along the chain. A small network that sees the codes of the
residues from ``window`` before residue i to ``ahead`` after it (rotated into residue i's key frame), the
key frame's local geometry there and residue i's Ramachandran class predicts the rest of residue i's
displacement. It is trained (``motion_context_train``) through the projection onto the key's geometry
with penalties for backbone clashes and Ramachandran outliers. The shipped one is causal (window 3, ahead
0): a residue is decoded from its own code and the three before it, so constrained decoding can judge
each residue as it will be decoded when it is drawn (mdllm.sampling.constraint), for a round trip within
0.01-0.04 Å of the symmetric decoder's (models/motiontoken/RECIPE.md). It learned from the encoder's own tokens, so it
sharpens what the tokens say and leaves their motion alone; trained on tokens partly swapped for other
frames' (``max_swap``) it would also smooth a language model's incoherent draws, but damps their motion
(models/motiontoken/RECIPE.md).

Tokens keep their meaning (encoding is unchanged and the tokenizer's hash does not cover this file), so
language models trained on the tokens stay valid. A wrong token still moves only the residues within
the window of it. Inference is numpy (three dense layers over a frame's residues); the C++ core's
``MotionTokenizer::decode`` is the plain placement (key + code) and ``MotionContextDecoder`` this
decoder (mdllm/motion_context.hpp).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file
from mdllm.geometry.projection import BREAK_NM

FILE_NAME = "context_decoder.safetensors"
N_CLASSES = 4  # Ramachandran classes (mdllm.geometry.ramachandran): general, glycine, proline, pre-proline


def key_segments(key) -> np.ndarray:
    """(L,) segment index of each residue: consecutive residues whose key CAs are closer than the
    projection's BREAK_NM (where it leaves their CA-CA distance free: a chain break)."""
    ca = np.asarray(key, np.float64)[:, 1]
    linked = np.linalg.norm(ca[1:] - ca[:-1], axis=1) < BREAK_NM
    return np.concatenate([[0], np.cumsum(~linked)])


def residue_classes(sequence: str | None, segments: np.ndarray) -> np.ndarray:
    """(L,) Ramachandran class per residue; every residue 'general' without a sequence."""
    from mdllm.geometry import ramachandran

    if sequence is None:
        return np.zeros(len(segments), np.int64)
    if len(sequence) != len(segments):
        raise MdllmError(f"sequence has {len(sequence)} residues, the key frame {len(segments)}")
    ends = np.append(segments[1:] != segments[:-1], True)
    return ramachandran.residue_classes(sequence, ends)


class ContextLayout:
    """What the features of one key frame (and sequence) fix: which residues each residue sees (the
    ``window`` before it and the ``ahead`` after it in its segment (``ahead`` defaults to ``window``; 0
    makes the decoder causal: residue i is final once codes 0..i are drawn), then the ``spatial``
    residues nearest to it in the key outside that window), the rotations between their key frames and
    its own, the key geometry around it, and its Ramachandran class."""

    def __init__(self, key, window: int, sequence: str | None = None, spatial: int = 0, ahead: int | None = None):
        from mdllm.tokenizer.motion import key_frames

        key = np.asarray(key, np.float64)
        n_res = len(key)
        rot = key_frames(key)
        seg = key_segments(key)
        ahead = window if ahead is None else ahead
        offsets = np.arange(-window, ahead + 1)
        j = np.arange(n_res)[:, None] + offsets[None]
        ok = (j >= 0) & (j < n_res)
        j = np.clip(j, 0, n_res - 1)
        ok &= seg[j] == seg[:, None]
        if spatial:
            ca = key[:, 1]
            dist = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
            seen = np.eye(n_res, dtype=bool)
            seen[np.nonzero(ok)[0], j[ok]] = True  # the window's real neighbours (clipped ones are not)
            dist[seen] = np.inf
            near = np.argsort(dist, axis=1, kind="stable")[:, :spatial]
            near_ok = np.isfinite(np.take_along_axis(dist, near, axis=1))
            if near.shape[1] < spatial:  # fewer residues than asked for: pad with unseen ones
                pad = spatial - near.shape[1]
                near = np.pad(near, ((0, 0), (0, pad)))
                near_ok = np.pad(near_ok, ((0, 0), (0, pad)))
            j, ok = np.concatenate([j, near], 1), np.concatenate([ok, near_ok], 1)
        self.window, self.spatial, self.ahead = window, spatial, ahead
        self.rot = rot
        self.key = key
        self.neighbour = j  # (L, W+1+A+S): the chain window (residue i itself at column W), then the nearest
        self.ok = ok.astype(np.float64)
        self.rel_rot = np.einsum("lji,lkjm->lkim", rot, rot[j])  # R_i^T R_j: (L, 2W+1+S, 3, 3)
        around = np.einsum("lji,lkaj->lkai", rot, key[j] - key[:, None, 1:2])  # key atoms of j in frame i
        around = around.reshape(n_res, j.shape[1], 12) * self.ok[..., None]
        others = np.arange(j.shape[1]) != window
        classes = residue_classes(sequence, seg)
        self.static = np.concatenate(
            [around[:, others].reshape(n_res, -1), self.ok[:, others], np.eye(N_CLASSES)[classes]], axis=1
        )

    def features(self, codes) -> np.ndarray:
        """(F, L, 12) code displacements (nm, each in its key residue's frame) -> (F, L, D) features."""
        n_frames, n_res = codes.shape[:2]
        near = codes[:, self.neighbour].reshape(n_frames, n_res, -1, 4, 3)
        near = np.einsum("lkij,flkaj->flkai", self.rel_rot, near).reshape(n_frames, n_res, -1, 12)
        near = (near * self.ok[None, :, :, None]).reshape(n_frames, n_res, -1)
        return np.concatenate([near, np.broadcast_to(self.static[None], (n_frames, *self.static.shape))], axis=2)


def feature_size(window: int, spatial: int = 0, ahead: int | None = None) -> int:
    columns = window + 1 + (window if ahead is None else ahead) + spatial
    return columns * 12 + (columns - 1) * 13 + N_CLASSES


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def gelu(x):
    """GELU, tanh form (PyTorch's approximate='tanh', which training uses)."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * x * (1.0 + 0.044715 * x * x)))  # x * x: x**3 is slow


class ContextDecoder:
    """Three dense layers; inputs scaled by the training features' mean and spread (in Å)."""

    TENSORS = ("w0", "b0", "w1", "b1", "w2", "b2", "mean", "scale")

    def __init__(
        self,
        tensors: dict[str, np.ndarray],
        window: int,
        spatial: int = 0,
        path: Path | None = None,
        sha256: str = "",
        ahead: int | None = None,
    ):
        self.window, self.spatial = int(window), int(spatial)
        self.ahead = self.window if ahead is None else int(ahead)
        self.path = path
        self.sha256 = sha256
        d = feature_size(self.window, self.spatial, self.ahead)
        hidden = tensors["w0"].shape[0]
        expected = {
            "w0": (hidden, d),
            "b0": (hidden,),
            "w1": (hidden, hidden),
            "b1": (hidden,),
            "w2": (12, hidden),
            "b2": (12,),
            "mean": (d,),
            "scale": (d,),
        }
        for name, shape in expected.items():
            if name not in tensors or tuple(tensors[name].shape) != shape:
                got = tuple(tensors[name].shape) if name in tensors else "missing"
                raise MdllmError(f"context decoder tensor {name}: expected shape {shape}, got {got}")
        self.tensors = {k: np.asarray(tensors[k], np.float64) for k in self.TENSORS}
        self._layout = None  # the last key's layout: generation decodes every draw on the same key

    @classmethod
    def load(cls, path) -> "ContextDecoder":
        from mdllm.files import sha256_file
        from mdllm.tokenizer.weights import read_header, read_tensors

        path = Path(path)
        meta, shapes = read_header(path)
        if "window" not in meta:
            raise in_file(path, "no 'window' in the metadata (not a motion context decoder)")
        tensors = read_tensors(path, {k: shapes.get(k, (0,)) for k in cls.TENSORS})
        window = int(meta["window"])
        ahead = int(meta.get("ahead", window))
        return cls(tensors, window, int(meta.get("spatial", 0)), path, sha256_file(path), ahead)

    def save(self, path, notes: dict | None = None) -> None:
        from safetensors.numpy import save_file

        from mdllm.files import atomic_output

        arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in self.tensors.items()}
        meta = {
            "format": "mdllm-motion-context",
            "version": "1",
            "window": str(self.window),
            "spatial": str(self.spatial),
            "ahead": str(self.ahead),
        }
        with atomic_output(path) as tmp:
            save_file(arrays, str(tmp), metadata=meta)
        if notes is not None:
            with atomic_output(Path(path).with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps(notes, indent=2) + "\n")

    def correction(self, codes, layout: ContextLayout, chunk_rows: int = 65536) -> np.ndarray:
        """(F, L, 12) nm: what the network adds to each residue's code displacement."""
        t = self.tensors
        x = layout.features(np.asarray(codes, np.float64)).reshape(-1, t["mean"].shape[0])
        out = np.empty((len(x), 12))
        # products this small gain nothing from BLAS threads, which would fight the generation loop's own
        with _blas_controller().limit(limits=1, user_api="blas"):
            for s in range(0, len(x), chunk_rows):
                h = (x[s : s + chunk_rows] * 10.0 - t["mean"]) / t["scale"]
                h = gelu(h @ t["w0"].T + t["b0"])
                h = gelu(h @ t["w1"].T + t["b1"])
                out[s : s + chunk_rows] = (h @ t["w2"].T + t["b2"]) / 10.0
        return out.reshape(np.shape(codes))

    def displacements(self, tokens, codebook, key, sequence: str | None = None) -> np.ndarray:
        """Tokens (F, L) -> (F, L, 12) displacements (nm) in each key residue's frame."""
        codes = np.asarray(codebook, np.float64)[np.asarray(tokens)]
        return codes + self.correction(codes, self.layout(key, sequence))

    def layout(self, key, sequence: str | None = None) -> ContextLayout:
        key = np.asarray(key, np.float64)
        last = self._layout
        if last is None or last[1] != sequence or not np.array_equal(last[0], key):
            self._layout = (key.copy(), sequence, ContextLayout(key, self.window, sequence, self.spatial, self.ahead))
        return self._layout[2]
