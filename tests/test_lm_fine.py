"""Language models of motion tokens with fine codes (mdllm.tokenizer.motion_fine): the vocabulary, the
token text with two slots per residue (its fine token where its first code moves far, else <f_none>), token files and training windows from
real MD."""

import numpy as np
import pytest
import torch

from mdllm import MdllmError
from mdllm.encoding import encode_backbone
from mdllm.io import load_backbone
from mdllm.lm.data import load_token_files, vocabulary_for, windows
from mdllm.lm.model import MistralLM, ModelConfig
from mdllm.lm.text import Vocabulary

from conftest import ROOT

BBA = ROOT / "data/md/bba_1FME/T300K_rep1"


@pytest.fixture(scope="module")
def encoded():
    bb = load_backbone(BBA / "trajectory.xtc", top=BBA / "trajectory.pdb", stride=25)
    return encode_backbone(bb)


def fine_vocab(K=16, K2=8):
    return Vocabulary(K, "h", key_codebook_size=4, key_tokenizer_hash="k", fine_codebook_size=K2, fine_hash="f")


def test_fine_tokens_follow_their_first_code():
    v = fine_vocab()
    assert v.fine_offset == v.structure_offset + 16 and v.fine_none_id == v.fine_offset + 8 == v.size - 1
    assert v.token_strings()[-9:] == [f"<f_{i}>" for i in range(8)] + ["<f_none>"]
    assert v.tokens_per_residue == 2 and Vocabulary(16, "h").tokens_per_residue == 1
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    fine = np.array([[-1, 7, -1], [0, 1, 2]])
    ids = v.frames(tokens, fine)
    s, f, none = v.structure_offset, v.fine_offset, v.fine_none_id
    expected = [
        s + 1,
        none,
        s + 2,
        f + 7,
        s + 3,
        none,
        v.frame_id,
        s + 4,
        f + 0,
        s + 5,
        f + 1,
        s + 6,
        f + 2,
        v.frame_id,
    ]
    np.testing.assert_array_equal(ids, expected)
    with pytest.raises(MdllmError, match="hold fine codes"):
        v.frames(tokens)
    with pytest.raises(MdllmError, match="outside"):
        v.frames(tokens, np.full((2, 3), 8))
    with pytest.raises(MdllmError, match="without them"):
        Vocabulary(16, "h").frames(tokens, fine)
    model = MistralLM(
        ModelConfig(
            vocab_size=v.size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            frame_span=64,
        )
    )
    model.vocab = v
    example, targets = v.example("ACD", tokens, key_tokens=[0, 1, 2], fine=fine)
    np.testing.assert_array_equal(targets[-14:], np.where(np.asarray(expected) == none, -100, expected))
    assert torch.isfinite(model(torch.as_tensor(example)[None])).all()
    # Frames span frame_span rotary positions with two slots per residue: 2 L + 1 tokens.
    positions = model.positions(torch.as_tensor(example)[None])[0, 0]
    start = len(example) - 14
    assert positions[start + 7] - positions[start] == pytest.approx(64)


def test_token_files_and_training_windows_carry_fine_codes_from_real_md(tmp_path, encoded):
    assert encoded.fine is not None and (encoded.fine >= 0).any()
    path = tmp_path / "bba.npz"
    encoded.save(path)
    trajs = load_token_files([path])
    t = trajs[0]
    np.testing.assert_array_equal(t.fine, encoded.fine)
    assert t.fine_hash == encoded.tokenizer.fine_codes.hash and t.fine_codebook_size == 1024
    assert vocabulary_for(t).fine_codebook_size == 0  # a new model speaks fine codes only when asked
    vocab = vocabulary_for(t, fine=True)
    assert vocab.fine_codebook_size == 1024
    train, val = windows(trajs, vocab, window=3, stride=1, val_fraction=0.2)
    ids, targets = train[0]
    assert len(ids) == len(vocab.prefix(t.sequence, key_tokens=t.key_tokens)) + 3 * (2 * t.n_residues + 1)
    assert (targets[ids == vocab.fine_none_id] == -100).all() and (ids == vocab.fine_none_id).any()
    # A model without fine codes reads the same files' first codes only.
    plain = Vocabulary(
        vocab.codebook_size,
        vocab.tokenizer_hash,
        key_codebook_size=vocab.key_codebook_size,
        key_tokenizer_hash=vocab.key_tokenizer_hash,
    )
    ids0, _ = windows(load_token_files([path], plain), plain, 3, 1, 0.2)[0][0]
    assert len(ids0) == len(ids) - 3 * t.n_residues
    # And a model with fine codes refuses files without them.
    t.fine, t.fine_hash, t.fine_codebook_size = None, "", 0
    t.save(tmp_path / "first_only.npz")
    with pytest.raises(MdllmError, match="fine codes from stage none"):
        load_token_files([tmp_path / "first_only.npz"], vocab)


def test_gguf_of_a_fine_code_model_matches_pytorch(tmp_path):
    pytest.importorskip("gguf")
    pytest.importorskip("llama_cpp")
    from mdllm.lm.export import read_metadata, write_gguf
    from mdllm.lm.gguf_eval import gguf_logits

    torch.manual_seed(0)
    v = fine_vocab(K=40, K2=24)
    model = MistralLM(
        ModelConfig(
            vocab_size=v.size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            frame_span=64,
        )
    )
    model.vocab = v
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2) if p.ndim == 2 else None
    path = write_gguf(model, tmp_path / "fine.gguf", "f32")
    meta = read_metadata(path)
    assert meta["fine_codebook_size"] == 24 and meta["fine_offset"] == v.fine_offset and meta["fine_hash"] == "f"
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 40, (3, 7))
    fine = np.where(rng.random((3, 7)) < 0.4, rng.integers(0, 24, (3, 7)), -1)
    ids, _ = v.example("ACDEFGH", tokens, key_tokens=rng.integers(0, 4, 7), fine=fine)
    with torch.no_grad():
        expected = model(torch.as_tensor(ids)[None])[0].numpy()
    assert np.abs(gguf_logits(path, ids) - expected).max() <= 1e-3


def test_mdllm_train_speaks_fine_codes_only_when_asked(tmp_path, encoded):
    import mdllm.lm as lm
    from conftest import run_mdllm

    path = tmp_path / "bba.npz"
    encoded.save(path)
    common = [path, "--preset", "tiny", "--window", "2", "--max-steps", "1", "--no-progress"]
    for flag, size in (([], 0), (["--fine-codes"], 1024)):
        out = tmp_path / f"m{size}"
        r = run_mdllm("train", *common, "-o", out, *flag)
        assert r.returncode == 0, r.stderr
        assert lm.load(out).vocab.fine_codebook_size == size
