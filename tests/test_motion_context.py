"""The context decoder of motion tokens: numpy inference against the PyTorch network it was trained as,
locality (a token moves only residues within the window), chain breaks, the differentiable projection
of training against the product's, the shipped decoder on held-out MD, training and bad input."""

import numpy as np
import pytest

from mdllm import MdllmError
from mdllm.io import load_backbone
from mdllm.tokenizer.motion import MotionTokenizer, place_displacements, superpose_on_key
from mdllm.tokenizer.motion_context import FILE_NAME, ContextDecoder, ContextLayout, feature_size

from conftest import ROOT

TRP_REP1 = ROOT / "data" / "md" / "trpcage_2JOF" / "T300K_rep1"  # held out from the tokenizer and the decoder


@pytest.fixture(scope="module")
def trp():
    return load_backbone(TRP_REP1 / "trajectory.xtc", top=TRP_REP1 / "trajectory.pdb")[:60]


def random_net(window, spatial=0, hidden=16, seed=0, ahead=None):
    import torch

    from mdllm.tokenizer.motion_context_train import network, network_tensors

    torch.manual_seed(seed)
    d = feature_size(window, spatial, ahead)
    net = network(d, hidden)
    rng = np.random.default_rng(seed)
    mean, scale = rng.normal(size=d), rng.uniform(0.5, 2.0, size=d)
    return net, ContextDecoder(network_tensors(net, mean, scale), window, spatial, ahead=ahead), mean, scale


def test_numpy_inference_is_the_pytorch_network(trp):
    import torch

    tok = MotionTokenizer.load()
    net, dec, mean, scale = random_net(window=2, spatial=4)
    key = trp.xyz[0]
    codes = tok.codebook.astype(np.float64)[tok.encode(trp.xyz[:5], key)]
    layout = ContextLayout(key, 2, trp.sequence, spatial=4)
    with torch.no_grad():
        want = net((torch.tensor(layout.features(codes)) * 10 - torch.tensor(mean)) / torch.tensor(scale)) / 10
    np.testing.assert_allclose(dec.correction(codes, layout), want.numpy(), rtol=1e-5, atol=1e-9)


def test_a_token_moves_only_residues_within_the_window(trp):
    tok = MotionTokenizer.load()
    _, dec, *_ = random_net(window=2)
    key = trp.xyz[0]
    tokens = tok.encode(trp.xyz[:1], key)
    changed = tokens.copy()
    changed[0, 9] = (changed[0, 9] + 1000) % tok.codebook_size
    a = dec.displacements(tokens, tok.codebook, key, trp.sequence)
    b = dec.displacements(changed, tok.codebook, key, trp.sequence)
    moved = np.flatnonzero(np.abs(a - b).max(axis=-1)[0] > 0)
    assert moved.tolist() == [7, 8, 9, 10, 11]


def test_spatial_neighbours_are_the_nearest_outside_the_window(trp):
    """With ``spatial`` S, residue i also sees the S residues nearest to it in the key (by CA) that its
    chain window does not hold; a token moves exactly the residues that see it."""
    tok = MotionTokenizer.load()
    key = trp.xyz[0].astype(np.float64)
    layout = ContextLayout(key, 1, trp.sequence, spatial=3)
    ca = key[:, 1]
    for i in (0, 9, 19):
        dist = np.linalg.norm(ca - ca[i], axis=1)
        dist[max(0, i - 1) : i + 2] = np.inf
        assert layout.neighbour[i, 3:].tolist() == np.argsort(dist, kind="stable")[:3].tolist()
    _, dec, *_ = random_net(window=1, spatial=3)
    tokens = tok.encode(trp.xyz[:1], key)
    changed = tokens.copy()
    changed[0, 5] = (changed[0, 5] + 1000) % tok.codebook_size
    diff = dec.displacements(tokens, tok.codebook, key) - dec.displacements(changed, tok.codebook, key)
    sees = (layout.neighbour == 5) & (layout.ok > 0)
    np.testing.assert_array_equal(np.abs(diff).max(axis=-1)[0] > 0, sees.any(axis=1))


def test_neighbours_across_a_chain_break_are_not_seen(trp):
    """A residue next to a gap in the key sees only its own segment; its features do not depend on the
    codes beyond the gap."""
    key = trp.xyz[0].astype(np.float64).copy()
    key[10:] += np.array([3.0, 0.0, 0.0])  # residues 10.. 3 nm away: a break between 9 and 10
    layout = ContextLayout(key, 2, trp.sequence)
    assert layout.ok[9].tolist() == [1, 1, 1, 0, 0] and layout.ok[10].tolist() == [0, 0, 1, 1, 1]
    rng = np.random.default_rng(0)
    codes = rng.normal(scale=0.05, size=(1, trp.n_residues, 12))
    other = codes.copy()
    other[0, 10:] += 0.1
    f_a, f_b = layout.features(codes), layout.features(other)
    np.testing.assert_array_equal(f_a[0, :10], f_b[0, :10])


def test_training_projection_is_the_products(trp):
    import torch

    from mdllm.geometry.projection import ITERATIONS, project_to_key_geometry
    from mdllm.tokenizer.motion_context_train import _Target

    tok = MotionTokenizer.load()
    key = trp.xyz[0]
    target = _Target(trp.xyz[:4], key, trp.sequence, tok, window=1, spatial=0)
    noisy = trp.xyz[:4] + np.random.default_rng(1).normal(scale=0.02, size=trp.xyz[:4].shape)
    got = target.project(torch.tensor(noisy, dtype=torch.float64), ITERATIONS).numpy()
    want = project_to_key_geometry(noisy, key, backend="numpy")
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_training_dihedrals_are_the_validity_checks(trp):
    import torch

    from mdllm.evaluate.validity import phi_psi_deg
    from mdllm.tokenizer.motion_context_train import _dihedral

    x = torch.tensor(trp.xyz[:3], dtype=torch.float64)
    n, ca, c = x[..., 0, :], x[..., 1, :], x[..., 2, :]
    phi = np.rad2deg(_dihedral(c[:, :-2], n[:, 1:-1], ca[:, 1:-1], c[:, 1:-1]).numpy())
    psi = np.rad2deg(_dihedral(n[:, 1:-1], ca[:, 1:-1], c[:, 1:-1], n[:, 2:]).numpy())
    ends = np.zeros(trp.n_residues, bool)
    ends[-1] = True
    want_phi, want_psi = phi_psi_deg(trp.xyz[:3], ends)
    np.testing.assert_allclose(phi, want_phi[:, 1:-1], atol=1e-3)
    np.testing.assert_allclose(psi, want_psi[:, 1:-1], atol=1e-3)


def test_shipped_decoder_on_held_out_md(trp):
    """Trp-cage's second 300 K run (neither the codebook nor the decoder saw it): decoding with the
    neighbours' tokens is closer to the MD and more often valid than the code alone."""
    from mdllm.evaluate.validity import check_backbone
    from mdllm.geometry.projection import project_to_key_geometry
    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom

    tok = MotionTokenizer.load()
    assert tok.context_decoder is not None
    key = trp.xyz[0]
    tokens = tok.encode(trp.xyz, key)
    truth = superpose_on_key(trp.xyz, key)
    rows = {}
    for use_context in (False, True):
        xyz = project_to_key_geometry(tok.decode(tokens, key, trp.sequence, use_context=use_context), key)
        rows[use_context] = (
            np.median(backbone_rmsd_angstrom(xyz, truth)),
            check_backbone(xyz, trp.sequence).valid.mean(),
        )
    assert rows[True][0] < rows[False][0] - 0.01  # 0.31 against 0.33 A (converged projection)
    assert rows[True][1] > rows[False][1]


def test_train_writes_a_decoder_the_tokenizer_loads(tmp_path, trp, monkeypatch):
    import shutil

    from mdllm.tokenizer.motion_context_train import train_context_decoder

    for name in ("config.json", "model.safetensors"):
        shutil.copy(ROOT / "models" / "motiontoken" / name, tmp_path / name)
    plain = MotionTokenizer.load(tmp_path)
    assert plain.context_decoder is None
    import mdllm.geometry.projection as projection

    before = plain.decoder_hash
    monkeypatch.setattr(projection, "ITERATIONS", projection.ITERATIONS + 1)
    assert plain.decoder_hash != before  # the projection decides decoded frames too
    monkeypatch.undo()
    notes = train_context_decoder(
        [trp[:20]], plain, tmp_path, steps=3, window=1, hidden=8, keys_per_trajectory=2, progress=False
    )
    assert (tmp_path / FILE_NAME).exists() and notes["steps"] == 3
    tok = MotionTokenizer.load(tmp_path)
    assert tok.context_decoder.window == 1
    assert tok.hash == plain.hash  # the tokens mean the same: token files and models stay valid
    assert tok.decoder_hash != plain.decoder_hash  # but decoded frames change
    frames = tok.decode(tok.encode(trp.xyz[:2], trp.xyz[0]), trp.xyz[:1], trp.sequence)
    assert frames.shape == (2, trp.n_residues, 4, 3) and np.isfinite(frames).all()


def test_bad_input(tmp_path, trp):
    _, dec, *_ = random_net(window=1)
    tok = MotionTokenizer.load()
    tokens = tok.encode(trp.xyz[:1], trp.xyz[0])
    with pytest.raises(MdllmError, match="sequence has 3 residues"):
        dec.displacements(tokens, tok.codebook, trp.xyz[0], "AAA")
    bad = dict(dec.tensors)
    bad["w1"] = bad["w1"][:, :3]
    with pytest.raises(MdllmError, match="tensor w1"):
        ContextDecoder(bad, 1)
    (tmp_path / "x.safetensors").write_bytes(b"not a file")
    with pytest.raises(MdllmError, match="x.safetensors"):
        ContextDecoder.load(tmp_path / "x.safetensors")


@pytest.mark.parametrize("spatial, ahead", [(0, None), (3, None), (2, 0), (0, 1)])
def test_cpp_core_decodes_as_the_numpy_reference(tmp_path, trp, spatial, ahead):
    """mdllm/motion_context.hpp (for C++ pipelines) against this module, on held-out MD tokens with a
    chain break in the key, with and without residue classes; symmetric and one-sided windows."""
    from mdllm import _core
    from mdllm.tokenizer.motion_context import key_segments, residue_classes

    tok = MotionTokenizer.load()
    if spatial or ahead is not None:
        _, dec, *_ = random_net(window=2, spatial=spatial, seed=3, ahead=ahead)
        path = tmp_path / FILE_NAME
        dec.save(path)
        dec = ContextDecoder.load(path)
        assert dec.ahead == (2 if ahead is None else ahead)
    else:
        dec, path = tok.context_decoder, tok.context_decoder.path
    key = trp.xyz[0].copy()
    key[12:] += np.float32([2.0, 0.0, 0.0])  # a gap between residues 12 and 13
    tokens = tok.encode(trp.xyz[:6], key)
    core = _core.MotionContextDecoder(str(path), tok._cpp)
    assert (core.window, core.spatial, core.ahead) == (dec.window, dec.spatial, dec.ahead)
    classes = residue_classes(trp.sequence, key_segments(key)).astype(np.int32)
    assert core.residue_classes(trp.sequence, key, trp.n_residues) == classes.tolist()
    for sequence, cls in ((trp.sequence, classes), (None, None)):
        out = np.empty((6, trp.n_residues, 4, 3), np.float32)
        core.decode(tokens, key, cls, 6, trp.n_residues, out)
        want = place_displacements(dec.displacements(tokens, tok.codebook, key, sequence), key)
        np.testing.assert_allclose(out, want, atol=1e-6)


def test_causal_decoder_reads_no_later_token(trp):
    """With ahead 0, residue i's decoding depends on the tokens of residues up to i alone (what lets
    constrained decoding judge a residue as decoded when it is drawn); with ahead 1 it does not."""
    tok = MotionTokenizer.load()
    key = trp.xyz[0]
    tokens = tok.encode(trp.xyz[5:6], key)
    rng = np.random.default_rng(1)
    for ahead, independent in ((0, True), (1, False)):
        _, dec, *_ = random_net(window=3, seed=2, ahead=ahead)
        base = dec.displacements(tokens, tok.codebook, key, trp.sequence)[0]
        later = tokens.copy()
        later[0, 11:] = rng.integers(0, tok.codebook_size, trp.n_residues - 11)
        moved = dec.displacements(later, tok.codebook, key, trp.sequence)[0]
        np.testing.assert_array_equal(moved[:10], base[:10])
        assert np.array_equal(moved[10], base[10]) == independent


def test_cpp_core_fuzz_and_errors(trp):
    """Random tokens on random backbone-like keys decode to finite frames equal to the reference's;
    NaN or degenerate keys, out-of-range tokens and classes are refused with ValueError."""
    from mdllm import _core

    tok = MotionTokenizer.load()
    core = _core.MotionContextDecoder(str(tok.context_decoder.path), tok._cpp)
    rng = np.random.default_rng(7)
    for n_res in (1, 2, 7, 30):
        key = trp.xyz[rng.integers(len(trp.xyz))][: min(n_res, 20)].copy()
        if n_res > 20:  # a second copy far away: two segments
            key = np.concatenate([key, key[: n_res - 20] + np.float32([3.0, 0.0, 0.0])])
        tokens = rng.integers(0, tok.codebook_size, size=(3, n_res)).astype(np.int32)
        out = np.empty((3, n_res, 4, 3), np.float32)
        core.decode(tokens, np.ascontiguousarray(key), None, 3, n_res, out)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, tok.decode(tokens, key[None]), atol=1e-6)
    key = np.ascontiguousarray(trp.xyz[0])
    tokens = tok.encode(trp.xyz[:1], key)
    out = np.empty((1, 20, 4, 3), np.float32)
    bad_key = key.copy()
    bad_key[4, 2] = bad_key[4, 1]  # C on CA
    nan_key = key.copy()
    nan_key[0, 0, 0] = np.nan
    too_big = tokens.copy()
    too_big[0, 3] = tok.codebook_size
    for args, message in (
        ((tokens, bad_key, None), "key residue 4"),
        ((tokens, nan_key, None), "NaN"),
        ((too_big, key, None), "out of range"),
        ((tokens, key, np.full(20, 4, np.int32)), "class out of range"),
    ):
        with pytest.raises(ValueError, match=message):
            core.decode(*args, 1, 20, out)
    with pytest.raises(ValueError, match="not a motion context decoder"):
        _core.MotionContextDecoder(str(tok.path / "model.safetensors"), tok._cpp)
