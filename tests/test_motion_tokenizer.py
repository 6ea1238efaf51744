"""Motion tokens anchored to a key frame: the numpy reference, the shipped codebook on real MD,
token files with their key frame, and bad input."""

import numpy as np
import pytest

from mdllm import MdllmError
from mdllm.encoding import decode_file, encode_backbone, encode_file
from mdllm.io import load_backbone
from mdllm import tokenfile
from mdllm.tokenizer.api import load_tokenizer
from mdllm.tokenizer.motion import MotionTokenizer, decode_reference, encode_reference, superpose_on_key

from conftest import DATA

ADK_DCD, ADK_PSF = DATA / "adk_dims_10.dcd", DATA / "adk.psf"


@pytest.fixture(scope="module")
def adk():
    return load_backbone(ADK_DCD, top=ADK_PSF)


@pytest.fixture(scope="module")
def motion():
    return MotionTokenizer.load()


def bb_rmsd_A(a, b):
    return np.sqrt(((np.asarray(a, np.float64) - b) ** 2).sum(-1).mean(axis=(-1, -2))) * 10.0


def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def test_frames_built_from_codes_come_back_exactly(adk):
    rng = np.random.default_rng(0)
    key = adk.xyz[0]
    codebook = rng.normal(scale=0.05, size=(64, 12))  # well separated codes: no near-ties
    tokens = rng.integers(0, 64, size=(3, adk.n_residues))
    frames = decode_reference(tokens, key, codebook)
    # move the frames anywhere: encoding superposes them back on the key first
    moved = frames @ random_rotation(rng).T.astype(np.float32) + np.float32([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(encode_reference(moved, key, codebook), tokens)


def test_shipped_codebook_round_trip_on_md(adk, motion):
    """The codes alone (key + code), and the shipped decoding (context decoder, then projection)."""
    from mdllm.encoding import decode_tokens

    tokens = motion.encode(adk.xyz, adk.xyz[0])
    truth = superpose_on_key(adk.xyz, adk.xyz[0])
    plain = bb_rmsd_A(motion.decode(tokens, adk.xyz[0], use_context=False), truth)
    assert np.median(plain) < 0.5, plain
    shipped = bb_rmsd_A(decode_tokens(motion, tokens, adk.xyz[0], sequence=adk.sequence), truth)
    assert np.median(shipped) < np.median(plain) - 0.03, (shipped, plain)  # 0.19 against 0.23 A
    assert (tokens[0] == motion.zero_token()).mean() > 0.5  # the key frame itself is (nearly) no motion


def test_a_wrong_token_moves_only_its_residue(adk, motion):
    """Placed by its code alone; the context decoder moves the residues within its window as well
    (tests/test_motion_context.py)."""
    rng = np.random.default_rng(1)
    key = adk.xyz[0]
    tokens = motion.encode(adk.xyz[5:6], key)
    cb = motion.codebook.astype(np.float64)
    sq = (cb**2).sum(1)
    dist = sq[:, None] + sq[None] - 2 * cb @ cb.T
    np.fill_diagonal(dist, np.inf)
    nearest_other = dist.argmin(1)
    swapped = tokens.copy()
    picks = rng.choice(adk.n_residues, size=int(0.05 * adk.n_residues), replace=False)
    swapped[0, picks] = nearest_other[swapped[0, picks]]
    a, b = motion.decode(tokens, key, use_context=False), motion.decode(swapped, key, use_context=False)
    moved = np.linalg.norm(a - b, axis=-1).max(axis=-1)[0]  # per residue, nm
    assert (moved[np.setdiff1d(np.arange(adk.n_residues), picks)] == 0).all()
    assert bb_rmsd_A(a[:, :, 1:2], b[:, :, 1:2])[0] < 0.3


def test_token_file_keeps_the_key_frame(tmp_path, adk):
    from mdllm.io import save

    key_file = tmp_path / "key.pdb"
    save(adk[4], key_file)
    out = tmp_path / "t.npz"
    enc = encode_file(ADK_DCD, out, top=ADK_PSF, key=key_file)
    np.testing.assert_allclose(enc.key_xyz, adk.xyz[4], atol=1e-3)  # PDB precision
    traj = tokenfile.load(out)
    assert traj.key_xyz.shape == (adk.n_residues, 4, 3) and traj.key_tokens.shape == (adk.n_residues,)
    assert traj.key_codebook_size == enc.fold_tokenizer.codebook_size
    written = decode_file(out, tmp_path / "d.xtc")
    back = load_backbone(written[0], top=written[1])
    assert back.n_frames == adk.n_frames
    superposed = superpose_on_key(adk.xyz, traj.key_xyz)
    assert np.median(bb_rmsd_A(back.xyz, superposed)) < 0.6


def test_chain_breaks_and_two_chains_encode(adk, motion):
    cut = adk[:2]
    xyz = cut.xyz.copy()
    xyz[:, 100:] += np.float32([3.0, 0.0, 0.0])  # a 3 nm gap: a second chain, far away
    tokens = motion.encode(xyz, xyz[0])
    back = motion.decode(tokens, xyz[0])
    assert np.median(bb_rmsd_A(back, superpose_on_key(xyz, xyz[0]))) < 0.6


def test_numpy_and_default_backends_agree(adk, motion):
    ref = load_tokenizer("motiontoken", backend="numpy")
    a = motion.encode(adk.xyz, adk.xyz[0])
    b = ref.encode(adk.xyz, adk.xyz[0])
    assert (a == b).mean() > 0.999
    np.testing.assert_allclose(motion.decode(a, adk.xyz[0]), ref.decode(a, adk.xyz[0]), atol=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda x, k: (x[:, :-1], k), "residues"),
        (lambda x, k: (np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), k), "NaN"),
        (lambda x, k: (x, np.zeros_like(k)), "collinear"),
    ],
)
def test_bad_input_is_one_clear_error(adk, motion, bad, message):
    xyz, key = bad(adk.xyz[:2].copy(), adk.xyz[0].copy())
    with pytest.raises(MdllmError, match=message):
        motion.encode(xyz, key)


def test_out_of_range_tokens_are_refused(adk, motion):
    with pytest.raises(MdllmError, match="out of range"):
        motion.decode(np.full((1, adk.n_residues), motion.codebook_size), adk.xyz[0])


def test_key_of_another_protein_is_refused(tmp_path):
    with pytest.raises(MdllmError, match="key frame"):
        encode_backbone(load_backbone(ADK_DCD, top=ADK_PSF), key=DATA / "5AWL.pdb")
