"""mdllm.tokenfile: the one reader and writer of token files; files in the layouts written before it
existed still load."""

import numpy as np
import pytest

from mdllm import MdllmError, tokenfile
from mdllm.tokenfile import TokenFile

SEQ, HASH, K = "ACDEF", "a" * 64, 16


def test_round_trip_of_every_field(tmp_path):
    rng = np.random.default_rng(0)
    tf = TokenFile(
        rng.integers(0, K, (2, 3, 5)).astype(np.int32),
        SEQ,
        HASH,
        K,
        key_xyz=rng.normal(size=(5, 4, 3)).astype(np.float32),
        key_tokens=np.arange(5, dtype=np.int32),
        key_tokenizer_hash="b" * 64,
        key_codebook_size=9,
        residue_ids=np.arange(10, 15),
        chain_ids=np.array(list("AABBB")),
        time=np.array([0.0, 2.0, 4.0]),
        token_logprobs=rng.normal(size=(2, 3, 6)).astype(np.float32),
        loglik=np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]], np.float32),
        valid=np.array([[True, False, True], [False, True, True]]),
        redraws=np.ones((2, 3), np.int32),
    )
    for compress in (False, True):
        back = tf.save(tmp_path / f"t{compress}.npz", compress=compress)
        got = tokenfile.load(back)
        assert got.source == str(back) and got.sequence == SEQ and got.tokenizer_hash == HASH
        assert got.codebook_size == K and got.key_tokenizer_hash == "b" * 64 and got.key_codebook_size == 9
        for name in (
            "tokens",
            "key_xyz",
            "key_tokens",
            "residue_ids",
            "chain_ids",
            "time",
            "token_logprobs",
            "loglik",
            "valid",
            "redraws",
        ):
            np.testing.assert_array_equal(getattr(got, name), getattr(tf, name), err_msg=name)
        assert got.frames.shape == (6, 5)
        np.testing.assert_array_equal(got.kept_loglik(), [-1.0, -3.0, -5.0, -6.0])  # walker-major, valid only
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))  # atomic: no leftovers


def test_files_in_the_earlier_layouts_still_load(tmp_path):
    """What ``mdllm encode`` (lm.data.save_token_file) and ``mdllm generate`` (Ensemble.save) wrote
    with np.savez before this module owned the format."""
    encoded = tmp_path / "traj000.npz"
    np.savez(
        encoded,
        tokens=np.zeros((4, 5), np.int32),
        sequence=np.array(SEQ),
        tokenizer_hash=np.array(HASH),
        codebook_size=np.array(K),
        key_xyz=np.zeros((5, 4, 3), np.float32),
        key_tokens=np.zeros(5, np.int32),
        key_tokenizer_hash=np.array("c" * 64),
        key_codebook_size=np.array(7),
        residue_ids=np.arange(1, 6),
        chain_ids=np.array(list("AAAAA")),
        time=np.arange(4.0),
    )
    t = tokenfile.load(encoded)
    assert t.tokens.shape == (4, 5) and t.key_codebook_size == 7 and t.time.shape == (4,)
    generated = tmp_path / "generated.tokens.npz"
    np.savez_compressed(
        generated,
        tokens=np.ones((2, 3, 5), np.int32),
        token_logprobs=np.zeros((2, 3, 6), np.float32),
        loglik=np.zeros((2, 3), np.float32),
        sequence=SEQ,
        tokenizer_hash=HASH,
        codebook_size=K,
        key_xyz=np.zeros((5, 4, 3), np.float32),
        redraws=np.zeros((2, 3), np.int32),
    )
    g = tokenfile.load(generated)
    assert g.tokens.shape == (2, 3, 5) and g.key_xyz.shape == (5, 4, 3) and g.key_tokens is None
    assert g.kept_loglik().shape == (6,)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(tokens=np.zeros((3, 5), np.int32), sequence=np.array(SEQ)), "lacks tokenizer_hash, codebook_size"),
        (
            dict(
                tokens=np.zeros((3, 4), np.int32),
                sequence=np.array(SEQ),
                tokenizer_hash=np.array(HASH),
                codebook_size=np.array(K),
            ),
            "4 tokens per frame but sequence has 5",
        ),
        (
            dict(
                tokens=np.full((3, 5), K, np.int32),
                sequence=np.array(SEQ),
                tokenizer_hash=np.array(HASH),
                codebook_size=np.array(K),
            ),
            "token outside 0..15",
        ),
        (
            dict(
                tokens=np.zeros((3, 5), np.float32),
                sequence=np.array(SEQ),
                tokenizer_hash=np.array(HASH),
                codebook_size=np.array(K),
            ),
            "must be integer",
        ),
        (
            dict(
                tokens=np.zeros((3, 5), np.int32),
                sequence=np.array(SEQ),
                tokenizer_hash=np.array(HASH),
                codebook_size=np.array(K),
                key_tokens=np.zeros(5, np.int32),
            ),
            "key frame but lacks key_xyz",
        ),
        (
            dict(
                tokens=np.zeros((3, 5), np.int32),
                sequence=np.array(SEQ),
                tokenizer_hash=np.array(HASH),
                codebook_size=np.array(K),
                key_xyz=np.zeros((4, 4, 3), np.float32),
            ),
            "key_xyz of shape \\(4, 4, 3\\) does not match tokens \\(3, 5\\)",
        ),
        (
            dict(
                tokens=np.zeros((2, 3, 5), np.int32),
                sequence=np.array(SEQ),
                tokenizer_hash=np.array(HASH),
                codebook_size=np.array(K),
                loglik=np.zeros((2, 4)),
            ),
            "loglik of shape \\(2, 4\\) does not match tokens \\(2, 3, 5\\)",
        ),
    ],
)
def test_bad_files_stop_with_an_error_naming_the_file(tmp_path, arrays, message):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(MdllmError, match=f"bad.npz: .*{message}"):
        tokenfile.load(bad)


def test_a_file_that_could_not_be_read_back_is_not_written(tmp_path):
    with pytest.raises(MdllmError, match="out.npz: token outside 0..-1"):
        TokenFile(np.ones((2, 5), np.int32), SEQ, HASH, 0).save(tmp_path / "out.npz")
    assert not list(tmp_path.iterdir())


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(MdllmError, match="junk.npz: not a readable token file"):
        tokenfile.load(tmp_path / "junk.npz")
    with pytest.raises(MdllmError, match="absent.npz: no such token file"):
        tokenfile.load(tmp_path / "absent.npz")
