"""The torsion-codebook tokenizer (models/torsiontoken; describes the key frame's fold): k-means training,
PyTorch vs C++ parity, round-trip accuracy of the shipped model on real AdK frames, exact geometry of
decoded chains, invariance, random-token fuzzing and clear errors for malformed files and tokens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mdllm import MdllmError, load_backbone
from mdllm.tokenizer import TorsionTokenizer
from mdllm.tokenizer.config import GEOMETRY_NAMES, TorsionConfig
from mdllm.tokenizer.metrics import backbone_rmsd_angstrom

torch = pytest.importorskip("torch")
from mdllm.tokenizer.torsion_train import residue_torsions, train_torsion_tokenizer  # noqa: E402
from conftest import run_mdllm  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def adk():
    return load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf")


@pytest.fixture(scope="module")
def small_dir(adk, tmp_path_factory):
    """64 codes fitted on real frames in a second (the shipped model has 1024, fitted on 2,987 chains)."""
    out = tmp_path_factory.mktemp("torsion64")
    trp = load_backbone(DATA / "1L2Y_3models.pdb")
    train_torsion_tokenizer(
        list(adk.xyz[:6]) + list(trp.xyz),
        TorsionConfig(codebook_size=64, beam_width=3),
        out,
        iters=8,
        seed=0,
        progress=False,
    )
    return out


def _bonds_A(xyz):
    x = np.asarray(xyz, np.float64) * 10.0
    n, ca, c, o = x[..., 0, :], x[..., 1, :], x[..., 2, :], x[..., 3, :]
    d = lambda a, b: np.linalg.norm(a - b, axis=-1)  # noqa: E731
    return d(n, ca), d(ca, c), d(c[..., :-1, :], n[..., 1:, :]), d(c, o)


def test_cpp_and_torch_agree(small_dir, adk):
    cpp, ref = TorsionTokenizer.load(small_dir, backend="cpp"), TorsionTokenizer.load(small_dir, backend="torch")
    assert cpp.kind == "torsion" and cpp.hash == ref.hash
    tokens_cpp, tokens_ref = cpp.encode(adk.xyz[6:]), ref.encode(adk.xyz[6:])
    # closed-loop encoding: a near-tie would change the rest of the chain, so demand identity here
    assert np.array_equal(tokens_cpp, tokens_ref)
    np.testing.assert_allclose(cpp.decode(tokens_cpp), ref.decode(tokens_cpp), atol=1e-5)


def test_decoded_chain_has_the_files_geometry_and_codes(small_dir):
    tok = TorsionTokenizer.load(small_dir)
    geometry = dict(zip(GEOMETRY_NAMES, tok._tensors["geometry"]))
    tokens = np.random.default_rng(0).integers(0, tok.codebook_size, size=(5, 40))
    xyz = tok.decode(tokens)
    assert np.isfinite(xyz).all() and xyz.dtype == np.float32
    for got, name in zip(_bonds_A(xyz), ("b_nca", "b_cac", "b_cn", "b_co")):
        np.testing.assert_allclose(got, geometry[name], atol=1e-4)
    # the codes' torsions come back (residue 0 has no omega or phi)
    angles = residue_torsions(xyz)
    want = tok._tensors["codebook"][tokens]
    diff = np.angle(np.exp(1j * (angles - want)))
    assert np.abs(diff[:, 1:]).max() < 1e-3 and np.abs(diff[:, 0, 2]).max() < 1e-3


def test_encoding_a_decoded_chain_gives_its_tokens_back(small_dir):
    tok = TorsionTokenizer.load(small_dir)
    tokens = np.random.default_rng(1).integers(0, tok.codebook_size, size=(3, 30)).astype(np.int32)
    assert np.array_equal(tok.encode(tok.decode(tokens)), tokens)


def test_tokens_do_not_depend_on_position_or_orientation(small_dir, adk):
    tok = TorsionTokenizer.load(small_dir)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = (adk.xyz[:3] @ q.T + np.array([3.0, -1.0, 2.0])).astype(np.float32)
    assert np.array_equal(tok.encode(moved), tok.encode(adk.xyz[:3]))


def test_shipped_default_round_trip_on_adk(adk):
    """The acceptance measurement in small: real AdK frames (not in the codebook's training chains)."""
    tok = TorsionTokenizer.load()
    assert tok.kind == "torsion"
    rec = tok.decode(tok.encode(adk.xyz))
    rmsd = backbone_rmsd_angstrom(rec, adk.xyz)
    assert np.median(rmsd) < 0.6, rmsd


def test_closed_loop_beats_nearest_code(small_dir, adk):
    """Error feedback is what keeps long chains right: per-residue nearest codes drift far more."""
    tok = TorsionTokenizer.load(small_dir)
    codes = tok._tensors["codebook"]
    angles = residue_torsions(adk.xyz[:2])
    angles[:, 0, :2] = np.pi, -np.pi / 2  # residue 0 has no omega or phi; any code's psi is what counts
    d = 1 - np.cos(angles[:, :, None, :] - codes[None, None]).sum(-1) / 3
    nearest = d.argmin(-1).astype(np.int32)
    open_loop = backbone_rmsd_angstrom(tok.decode(nearest), adk.xyz[:2])
    closed = backbone_rmsd_angstrom(tok.decode(tok.encode(adk.xyz[:2])), adk.xyz[:2])
    assert (closed * 3 < open_loop).all(), (closed, open_loop)


def test_bad_tokens_and_coordinates_are_clear_errors(small_dir, adk):
    for backend in ("cpp", "torch"):
        tok = TorsionTokenizer.load(small_dir, backend=backend)
        with pytest.raises(MdllmError, match="out of range"):
            tok.decode(np.array([[0, 64]]))
        with pytest.raises(MdllmError, match="out of range"):
            tok.decode(np.array([[-1, 3]]))
        bad = adk.xyz[:1].copy()
        bad[0, 5, 1, 0] = np.nan
        with pytest.raises(MdllmError, match="NaN"):
            tok.encode(bad)
        flat = adk.xyz[:1].copy()
        flat[0, 0, 1] = flat[0, 0, 0]  # CA on top of N: no frame to start from
        with pytest.raises(MdllmError, match="degenerate"):
            tok.encode(flat)


def _copy_with(small_dir, tmp_path, tensors=None, config=None):
    from safetensors.numpy import load_file, save_file

    out = tmp_path / "bad"
    shutil.copytree(small_dir, out)
    if tensors is not None:
        t = load_file(str(small_dir / "model.safetensors"))
        t = tensors(t)
        save_file(t, str(out / "model.safetensors"))
    if config is not None:
        c = json.loads((small_dir / "config.json").read_text())
        (out / "config.json").write_text(json.dumps(config(c)))
    return out


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_malformed_files_are_clear_errors(small_dir, tmp_path, backend):
    cases = [
        (dict(tensors=lambda t: {"codebook": t["codebook"][:10], "geometry": t["geometry"]}), "shape"),
        (dict(tensors=lambda t: {"codebook": t["codebook"]}), "missing"),
        (dict(tensors=lambda t: {**t, "geometry": np.full(8, np.nan, np.float32)}), "NaN"),
        (dict(config=lambda c: {**c, "beam_width": 0}), "beam_width"),
        (dict(config=lambda c: {**c, "kind": "nonsense"}), "kind"),
        (dict(config=lambda c: {**c, "levels": [4, 4]}), "unknown"),
    ]
    for i, (change, message) in enumerate(cases):
        bad = _copy_with(small_dir, tmp_path / str(i), **change)
        with pytest.raises(MdllmError, match=message):
            TorsionTokenizer.load(bad, backend=backend)
    truncated = _copy_with(small_dir, tmp_path / "t")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(MdllmError, match="model.safetensors"):
        TorsionTokenizer.load(truncated, backend=backend)


def test_random_tokens_fuzz(small_dir):
    """Any token sequence of any length decodes to a finite chain that re-encodes without error."""
    tok = TorsionTokenizer.load(small_dir, backend="cpp")
    rng = np.random.default_rng(3)
    for length in (1, 2, 3, 17, 150):
        tokens = rng.integers(0, tok.codebook_size, size=(4, length))
        xyz = tok.decode(tokens)
        assert np.isfinite(xyz).all()
        assert tok.encode(xyz).shape == (4, length)


def test_cli_trains_a_torsion_tokenizer(tmp_path, adk):
    from mdllm.tokenizer.data import write_segments

    npz = tmp_path / "chains.npz"
    write_segments(npz, [(f"adk:A:{i}", x) for i, x in enumerate(adk.xyz)])
    r = run_mdllm(
        "tokenizer",
        "train",
        "--kind",
        "torsion",
        "--data",
        npz,
        "--codebook",
        32,
        "--beam",
        2,
        "--kmeans-iters",
        3,
        "--val-percent",
        0,
        "-o",
        tmp_path / "tok",
    )
    assert r.returncode == 0, r.stderr
    assert "round-trip RMSD" not in r.stdout  # nothing held out at 0 %
    tok = TorsionTokenizer.load(tmp_path / "tok")
    assert tok.codebook_size == 32 and tok.config.beam_width == 2
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert cfg["_training"]["codes_used"] > 0.5
    r = run_mdllm("tokenizer", "train", "--kind", "torsion", "--data", npz, "--codebook", 1, "-o", tmp_path / "x")
    assert r.returncode != 0 and "codebook_size" in r.stderr


def test_training_measures_held_out_chains(adk, tmp_path):
    trp = load_backbone(DATA / "1L2Y_3models.pdb")
    stats = train_torsion_tokenizer(
        list(adk.xyz[:4]),
        TorsionConfig(codebook_size=32, beam_width=2),
        tmp_path,
        iters=3,
        progress=False,
        val_segments=[trp.xyz[0], adk.xyz[5]],
    )
    tok = TorsionTokenizer.load(tmp_path)
    want = [backbone_rmsd_angstrom(tok.decode(tok.encode(x[None])), x[None])[0] for x in (trp.xyz[0], adk.xyz[5])]
    assert stats["val_chains"] == 2 and stats["val_rmsd_median_A"] == pytest.approx(np.median(want))
    assert json.loads((tmp_path / "config.json").read_text())["_training"]["val_rmsd_p95_A"] > 0


def test_dihedral_matches_mdtraj(adk):
    import mdtraj as md

    traj = md.load(str(DATA / "adk_dims_10.dcd"), top=str(DATA / "adk.psf"))
    _, phi = md.compute_phi(traj[:2])
    ours = residue_torsions(adk.xyz[:2])[:, 1:, 1]
    np.testing.assert_allclose(np.angle(np.exp(1j * (ours - phi))), 0, atol=1e-4)
