"""Fine codes of the motion tokenizer (mdllm.tokenizer.motion_fine): a second token where the first code
moves far, on real MD; the shipped file; training; bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mdllm import MdllmError
from mdllm.geometry.projection import project_to_key_geometry
from mdllm.io import load_backbone
from mdllm.tokenizer.motion import MotionTokenizer, displacements, place_displacements, superpose_on_key
from mdllm.tokenizer.motion_fine import FILE_NAME, NO_FINE, FineCodes, first_code_moves_A, train_fine_codes

from conftest import DATA, ROOT

ADK_DCD, ADK_PSF = DATA / "adk_dims_10.dcd", DATA / "adk.psf"
BBA = ROOT / "data/md/bba_1FME/T300K_rep1"


@pytest.fixture(scope="module")
def motion():
    return MotionTokenizer.load()


@pytest.fixture(scope="module")
def bba():
    bb = load_backbone(BBA / "trajectory.xtc", top=BBA / "trajectory.pdb")
    return bb, bb.xyz[0], bb.xyz[bb.n_frames // 2 :: 8]  # key = first frame; held-out second half


def rmsd_A(a, b):
    return np.sqrt(((np.asarray(a, np.float64) - b) ** 2).sum(-1).mean(axis=(-1, -2))) * 10.0


def test_shipped_fine_codes_follow_the_first_codes_that_move_far(motion):
    fine = motion.fine_codes
    assert fine is not None and fine.size == 1024 and fine.first_stage_hash == motion.hash
    moves = first_code_moves_A(motion.codebook)
    np.testing.assert_array_equal(fine.follows, moves > fine.threshold_A)
    assert 0.1 < fine.follows.mean() < 0.5  # large moves only, not thermal jitter


def test_fine_tokens_stand_where_the_first_code_moves_far_and_bring_bba_under_half_an_angstrom(motion, bba):
    bb, key, frames = bba
    tokens, fine = motion.encode_fine(frames, key)
    np.testing.assert_array_equal(tokens, motion.encode(frames, key))  # the first stage is unchanged
    np.testing.assert_array_equal(fine >= 0, motion.fine_codes.follows[tokens])
    assert (fine < motion.fine_codes.size).all()
    # The reference: the fine code is the nearest one to what the first code leaves.
    d = displacements(frames, key)
    residual = d[fine >= 0] - motion.codebook.astype(np.float64)[tokens[fine >= 0]]
    dist = ((residual[:, None] - motion.fine_codes.codebook.astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(fine[fine >= 0], dist.argmin(1))

    # Decoded as every caller gets frames (context decoder, then the projection onto the key's geometry).
    truth = superpose_on_key(frames, key)
    one = np.median(rmsd_A(project_to_key_geometry(motion.decode(tokens, key, bb.sequence), key), truth))
    two = np.median(rmsd_A(project_to_key_geometry(motion.decode(tokens, key, bb.sequence, fine=fine), key), truth))
    assert one > 0.6 and two < 0.5  # BBA's termini move several Å from the key
    # Without the context decoder, decoding is exactly key + c1 + c2.
    plain = motion.decode(tokens, key, fine=fine, use_context=False)
    np.testing.assert_allclose(plain, place_displacements(motion.code_vectors(tokens, fine), key), atol=1e-6)


def test_misplaced_or_out_of_range_fine_tokens_are_refused(motion, bba):
    bb, key, frames = bba
    tokens, fine = motion.encode_fine(frames[:2], key)
    far = np.argwhere(fine >= 0)[0]
    near = np.argwhere(fine < 0)[0]
    bad = fine.copy()
    bad[tuple(far)] = NO_FINE
    with pytest.raises(MdllmError, match="wants a fine token"):
        motion.decode(tokens, key, fine=bad)
    bad = fine.copy()
    bad[tuple(near)] = 3
    with pytest.raises(MdllmError, match="no fine token"):
        motion.decode(tokens, key, fine=bad)
    bad = fine.copy()
    bad[tuple(far)] = motion.fine_codes.size
    with pytest.raises(MdllmError, match="wants a fine token"):
        motion.decode(tokens, key, fine=bad)
    with pytest.raises(MdllmError, match="shape"):
        motion.decode(tokens, key, fine=fine[:, :-1])


def test_training_fine_codes_on_real_md_and_refusals(tmp_path, motion):
    adk = load_backbone(ADK_DCD, top=ADK_PSF)
    out = tmp_path / "tok"
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        (out / name).write_bytes((motion.path / name).read_bytes())
    notes = train_fine_codes(
        [adk.xyz], motion, out, codebook_size=16, threshold_A=1.0, keys_per_trajectory=2, iterations=3, progress=False
    )
    assert (out / FILE_NAME).exists() and json.loads((out / FILE_NAME).with_suffix(".json").read_text())["seed"] == 0
    assert notes["fine_samples"] >= 16 and notes["first_codes_followed"] > 0
    tok = MotionTokenizer.load(out)
    assert tok.fine_codes.size == 16 and tok.fine_codes.threshold_A == 1.0
    key = adk.xyz[0]
    tokens, fine = tok.encode_fine(adk.xyz, key)
    truth = superpose_on_key(adk.xyz, key)
    one = rmsd_A(tok.decode(tokens, key, use_context=False), truth)
    two = rmsd_A(tok.decode(tokens, key, use_context=False, fine=fine), truth)
    assert (two <= one + 1e-6).all() and two.mean() < one.mean()

    with pytest.raises(MdllmError, match="move more than"):
        train_fine_codes([adk.xyz[:2]], motion, tmp_path / "few", codebook_size=1024, threshold_A=5.0, progress=False)
    # A fine file beside another first stage is refused by its hash.
    other = FineCodes(np.zeros((4, 12)), np.zeros(motion.codebook_size, bool), 2.0, "0" * 64)
    other.save(out / FILE_NAME)
    with pytest.raises(MdllmError, match="another first-stage codebook"):
        MotionTokenizer.load(out)


def test_encode_fine_without_fine_codes_says_how_to_get_them(tmp_path, motion, bba):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((motion.path / name).read_bytes())
    tok = MotionTokenizer.load(tmp_path)
    _, key, frames = bba
    with pytest.raises(MdllmError, match="train-fine"):
        tok.encode_fine(frames[:1], key)


def test_cli_train_fine_and_eval_report_the_fine_round_trip(tmp_path, motion):
    out = tmp_path / "tok"
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        (out / name).write_bytes((motion.path / name).read_bytes())
    md = f"{ADK_DCD}:{ADK_PSF}"
    cli = [sys.executable, "-m", "mdllm"]
    subprocess.run(
        cli
        + [
            "tokenizer",
            "train-fine",
            "--tokenizer",
            str(out),
            "--md",
            md,
            "--codebook",
            "16",
            "--threshold",
            "1.0",
            "--keys",
            "2",
            "--kmeans-iters",
            "2",
        ],
        check=True,
        capture_output=True,
    )
    report = tmp_path / "eval.json"
    subprocess.run(
        cli + ["tokenizer", "eval", "--tokenizer", str(out), "--md", md, "-o", str(report)],
        check=True,
        capture_output=True,
    )
    fine = json.loads(report.read_text())["trajectories"][md]["fine"]
    assert 0 < fine["residues_with_fine_token"] < 1
    assert fine["rmsd_projected_A"]["median"] > 0 and fine["robustness_5pct_ca_A"] > 0


def test_compiled_fine_encode_and_decode_match_the_numpy_reference(bba):
    cpp, ref = MotionTokenizer.load(backend="cpp"), MotionTokenizer.load(backend="numpy")
    bb, key, frames = bba
    tokens, fine = cpp.encode_fine(frames, key)
    ref_tokens, ref_fine = ref.encode_fine(frames, key)
    np.testing.assert_array_equal(tokens, ref_tokens)
    np.testing.assert_array_equal(fine, ref_fine)
    assert (fine >= 0).any()
    # Placement with fine codes (no context decoder) in the core, and the context decoder's C++ twin.
    placed = np.empty(frames.shape, np.float32)
    cpp.core_tokenizer().decode(tokens, np.ascontiguousarray(key), *tokens.shape, placed, fine)
    np.testing.assert_allclose(placed, ref.decode(tokens, key, fine=fine, use_context=False), atol=2e-6)
    from mdllm.tokenizer.motion_context import key_segments, residue_classes

    classes = residue_classes(bb.sequence, key_segments(key)).astype(np.int32)
    decoded = np.empty(frames.shape, np.float32)
    cpp.core_context_decoder().decode(tokens, np.ascontiguousarray(key), classes, *tokens.shape, decoded, fine)
    expected = place_displacements(
        cpp.code_vectors(tokens, fine)
        + cpp.context_decoder.correction(cpp.code_vectors(tokens, fine), cpp.context_decoder.layout(key, bb.sequence)),
        key,
    )
    np.testing.assert_allclose(decoded, expected, atol=2e-5)
    # Both refuse fine codes that do not stand exactly where the first codes take one.
    none = np.full_like(fine, -1)
    with pytest.raises(MdllmError, match="does not fit"):
        cpp.core_tokenizer().decode(tokens, np.ascontiguousarray(key), *tokens.shape, placed, none)
    with pytest.raises(MdllmError, match="does not fit"):
        cpp.core_context_decoder().decode(tokens, np.ascontiguousarray(key), classes, *tokens.shape, decoded, none)
