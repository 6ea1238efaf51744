"""The C++ motion tokenizer (mdllm._core.MotionTokenizer) against the numpy reference of
docs/motion_tokenizer_spec.md (mdllm.tokenizer.motion.encode_reference / decode_reference) on real AdK
frames: the same tokens, the same decoded frames, tokens blind to rigid motions, a chain with a gap,
exact round trips, and ValueError for every bad input, file and config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from mdllm import _core, load_backbone
from mdllm.tokenizer.motion import decode_reference, encode_reference

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def adk():
    return load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf").xyz  # (10, 214, 4, 3) nm


def _local_displacements(xyz, key):
    """(F, L, 12) displacements of the frames from the key in the key residues' frames (spec steps 1-3),
    written here independently of the reference, to build codebooks from real motion."""
    x, y = np.asarray(xyz, np.float64), np.asarray(key, np.float64)
    cx, cy = x[:, :, 1].mean(1), y[:, 1].mean(0)
    h = np.einsum("fla,flb->fab", x[:, :, 1] - cx[:, None], y[None, :, 1] - cy)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]
    r = np.transpose(u @ vt, (0, 2, 1))  # R = V U^T (with the reflection fixed)
    z = np.einsum("fab,flkb->flka", r, x - cx[:, None, None]) + cy
    n, ca, c = y[:, 0], y[:, 1], y[:, 2]
    e1 = (c - ca) / np.linalg.norm(c - ca, axis=-1, keepdims=True)
    w = (n - ca) - ((n - ca) * e1).sum(-1, keepdims=True) * e1
    e2 = w / np.linalg.norm(w, axis=-1, keepdims=True)
    rot = np.stack([e1, e2, np.cross(e1, e2)], -1)
    return np.einsum("lji,flaj->flai", rot, z - y[None]).reshape(len(x), y.shape[0], 12)


def _write(directory: Path, codebook, config=None, name="codebook") -> tuple[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.safetensors"
    save_file({name: np.ascontiguousarray(codebook)}, str(weights))
    cfg = (
        config
        if config is not None
        else {"kind": "motion", "codebook_size": int(len(codebook)), "version": 1, "_note": "test"}
    )
    return str(weights), json.dumps(cfg)


def _codebook(adk, k, seed=0, noise=0.005):
    """k displacement vectors of real AdK motion (frames 1.. against frame 0) plus a little noise."""
    rng = np.random.default_rng(seed)
    d = _local_displacements(adk[1:], adk[0]).reshape(-1, 12)
    pick = d[rng.choice(len(d), size=k, replace=False)]
    return (pick + rng.normal(0.0, noise, size=pick.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def tok256(adk, tmp_path_factory):
    cb = _codebook(adk, 256)
    return _core.MotionTokenizer(*_write(tmp_path_factory.mktemp("motion256"), cb)), cb


def _encode(tok, xyz, key):
    xyz = np.ascontiguousarray(xyz, np.float32)
    out = np.empty(xyz.shape[:2], np.int32)
    tok.encode(xyz, np.ascontiguousarray(key, np.float32), xyz.shape[0], xyz.shape[1], out)
    return out


def _decode(tok, tokens, key):
    tokens = np.ascontiguousarray(tokens, np.int32)
    out = np.empty(tokens.shape + (4, 3), np.float32)
    tok.decode(tokens, np.ascontiguousarray(key, np.float32), tokens.shape[0], tokens.shape[1], out)
    return out


def _agree(a, b):
    return float(np.mean(np.asarray(a) == np.asarray(b)))


@pytest.mark.parametrize("threads", [1, 2])
def test_tokens_and_frames_match_the_numpy_reference(tok256, adk, threads):
    tok, cb = tok256
    key = adk[0]
    old = _core.num_threads()
    _core.set_num_threads(threads)
    try:
        tokens = _encode(tok, adk, key)
        single = np.concatenate([_encode(tok, adk[f : f + 1], key) for f in range(len(adk))])  # residue-split path
    finally:
        _core.set_num_threads(old)
    assert tok.codebook_size == 256
    ref = encode_reference(adk, key, cb)
    assert tokens.shape == ref.shape == (10, 214) and tokens.dtype == np.int32
    assert _agree(tokens, ref) >= 0.999
    assert np.array_equal(single, tokens)
    assert len(np.unique(tokens)) > 50  # a real test: the frames use many codes
    np.testing.assert_allclose(_decode(tok, tokens, key), decode_reference(tokens, key, cb), atol=1e-5, rtol=0)
    rng = np.random.default_rng(3)
    random_tokens = rng.integers(0, 256, size=(4, 214)).astype(np.int32)
    np.testing.assert_allclose(
        _decode(tok, random_tokens, key), decode_reference(random_tokens, key, cb), atol=1e-5, rtol=0
    )


def test_other_key_and_codebook_size_not_a_multiple_of_eight(adk, tmp_path):
    cb = _codebook(adk, 37, seed=5, noise=0.02)
    tok = _core.MotionTokenizer(*_write(tmp_path, cb))
    key = adk[6]
    tokens = _encode(tok, adk, key)
    assert _agree(tokens, encode_reference(adk, key, cb)) >= 0.999
    np.testing.assert_allclose(_decode(tok, tokens, key), decode_reference(tokens, key, cb), atol=1e-5, rtol=0)


def test_tokens_ignore_rigid_motions_of_the_frames(tok256, adk):
    tok, _ = tok256
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # a proper rotation
    moved = (adk.astype(np.float64) @ q.T + np.array([2.5, -1.0, 4.0])).astype(np.float32)
    assert _agree(_encode(tok, moved, adk[0]), _encode(tok, adk, adk[0])) >= 0.999


def test_chain_with_a_gap(tok256, adk):
    tok, cb = tok256
    keep = np.r_[0:90, 105:214]  # residues 90-104 cut out: a chain break
    frames, key = adk[:, keep], adk[0, keep]
    tokens = _encode(tok, frames, key)
    assert _agree(tokens, encode_reference(frames, key, cb)) >= 0.999
    np.testing.assert_allclose(_decode(tok, tokens, key), decode_reference(tokens, key, cb), atol=1e-5, rtol=0)


def test_decode_then_encode_is_exact_when_codes_keep_ca(adk, tmp_path):
    cb = _codebook(adk, 128, seed=9, noise=0.01)
    cb[:, 3:6] = 0.0  # CA stays on the key: the superposition is the identity and encode inverts decode
    tok = _core.MotionTokenizer(*_write(tmp_path, cb))
    tokens = np.random.default_rng(4).integers(0, 128, size=(3, 214)).astype(np.int32)
    xyz = _decode(tok, tokens, adk[0])
    assert np.array_equal(_encode(tok, xyz, adk[0]), tokens)
    np.testing.assert_allclose(_decode(tok, _encode(tok, xyz, adk[0]), adk[0]), xyz, atol=1e-6, rtol=0)


SHIPPED = Path(__file__).parent.parent / "models" / "motiontoken"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").exists(), reason="no shipped motion tokenizer")
def test_shipped_codebook_matches_the_reference(adk):
    from safetensors.numpy import load_file

    cb = load_file(str(SHIPPED / "model.safetensors"))["codebook"]
    tok = _core.MotionTokenizer(str(SHIPPED / "model.safetensors"), (SHIPPED / "config.json").read_text())
    assert tok.codebook_size == len(cb) and cb.shape[1] == 12
    frames, key = adk[1:6], adk[0]  # 1,070 residues: one chunk of the reference's search
    tokens = _encode(tok, frames, key)
    assert _agree(tokens, encode_reference(frames, key, cb)) >= 0.999
    np.testing.assert_allclose(_decode(tok, tokens, key), decode_reference(tokens, key, cb), atol=1e-5, rtol=0)


def test_bad_inputs_raise_value_error(tok256, adk):
    tok, _ = tok256
    key = np.ascontiguousarray(adk[0])
    frames = np.ascontiguousarray(adk[:2])
    out = np.full((2, 214), -1, np.int32)
    bad = frames.copy()
    bad[1, 50, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        tok.encode(bad, key, 2, 214, out)
    assert (out == -1).all()  # refused before any work
    bad[1, 50, 2, 1] = np.inf
    with pytest.raises(ValueError):
        tok.encode(bad, key, 2, 214, out)
    bad_key = key.copy()
    bad_key[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="key"):
        tok.encode(frames, bad_key, 2, 214, out)
    with pytest.raises(ValueError, match="key"):
        tok.decode(np.zeros((2, 214), np.int32), bad_key, 2, 214, np.empty((2, 214, 4, 3), np.float32))
    for atom, value in ((2, key[7, 1]), (0, 2 * key[7, 1] - key[7, 2])):  # C on CA; N on the CA-C line
        degenerate = key.copy()
        degenerate[7, atom] = value
        with pytest.raises(ValueError, match="residue 7"):
            tok.encode(frames, degenerate, 2, 214, out)
        with pytest.raises(ValueError, match="residue 7"):
            tok.decode(np.zeros((2, 214), np.int32), degenerate, 2, 214, np.empty((2, 214, 4, 3), np.float32))
    assert (out == -1).all()
    with pytest.raises(ValueError, match="key"):  # the key has another residue count than the frames
        tok.encode(frames[:, :200], key, 2, 200, np.empty((2, 200), np.int32))
    with pytest.raises(ValueError, match="xyz"):
        tok.encode(frames, key, 3, 214, np.empty((3, 214), np.int32))
    with pytest.raises(ValueError):
        tok.encode(frames[:, :0], key[:0], 2, 0, np.empty((2, 0), np.int32))
    for token in (256, -1, 10**6):
        tokens = np.zeros((2, 214), np.int32)
        tokens[1, 100] = token
        xyz = np.full((2, 214, 4, 3), 7.0, np.float32)
        with pytest.raises(ValueError, match="out of range"):
            tok.decode(tokens, key, 2, 214, xyz)
        assert (xyz == 7.0).all()
    with pytest.raises(ValueError, match="tokens"):
        tok.decode(np.zeros((2, 213), np.int32), key, 2, 214, np.empty((2, 214, 4, 3), np.float32))
    with pytest.raises(TypeError):  # outputs must already have the right dtype
        tok.encode(frames, key, 2, 214, np.empty((2, 214), np.int64))
    with pytest.raises(TypeError):
        tok.decode(np.zeros((2, 214), np.int32), key, 2, 214, np.empty((2, 214, 4, 3), np.float64))


def test_bad_files_and_configs_raise_value_error(adk, tmp_path):
    cb = _codebook(adk, 16)
    good = {"kind": "motion", "codebook_size": 16, "version": 1}
    _core.MotionTokenizer(*_write(tmp_path / "good", cb, good))
    cases = {
        "shape": (cb.reshape(32, 6), {**good, "codebook_size": 32}),
        "rank": (cb.reshape(16, 3, 4), good),
        "count": (cb, {**good, "codebook_size": 17}),
        "kind": (cb, {**good, "kind": "torsion"}),
        "no_kind": (cb, {"codebook_size": 16, "version": 1}),
        "version": (cb, {**good, "version": 2}),
        "size_type": (cb, {**good, "codebook_size": "16"}),
        "unknown_key": (cb, {**good, "beam_width": 4}),
        "dtype": (cb.astype(np.float16), good),
        "nan": (np.where(np.arange(cb.size).reshape(cb.shape) == 7, np.nan, cb).astype(np.float32), good),
    }
    for name, (codebook, cfg) in cases.items():
        with pytest.raises(ValueError):
            _core.MotionTokenizer(*_write(tmp_path / name, codebook, cfg))
    with pytest.raises(ValueError, match="codebook"):
        _core.MotionTokenizer(*_write(tmp_path / "missing", cb, good, name="codes"))
    weights, cfg = _write(tmp_path / "text", cb, good)
    for text in ("not json", "[1]", ""):
        with pytest.raises(ValueError):
            _core.MotionTokenizer(weights, text)
    with pytest.raises(ValueError):
        _core.MotionTokenizer(str(tmp_path / "nowhere.safetensors"), cfg)
    Path(weights).write_bytes(Path(weights).read_bytes()[:40])  # truncated
    with pytest.raises(ValueError):
        _core.MotionTokenizer(weights, cfg)
