"""GGUF export: llama.cpp (through llama-cpp-python) computes the same logits as PyTorch."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

import mdllm.lm as lm  # noqa: E402
from mdllm.errors import MdllmError  # noqa: E402
from mdllm.lm.export import interleave_rotary_rows, read_metadata, write_gguf  # noqa: E402
from mdllm.lm.gguf_eval import gguf_logits  # noqa: E402
from mdllm.lm.lora import LoRALinear, add_lora  # noqa: E402
from mdllm.lm.model import apply_rotary, rotary_tables  # noqa: E402

HASH = "feedc0de" * 8
K = 40


def parity_model(seed=0):
    """Tiny model with Q8_0-compatible sizes and weights large enough that errors would show."""
    vocab = lm.Vocabulary(K, HASH)
    cfg = lm.ModelConfig(
        vocab_size=vocab.size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=500.0,
    )
    torch.manual_seed(seed)
    model = lm.MistralLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.normal_(0, 0.1)
            else:
                p.uniform_(0.5, 1.5)  # norms away from 1 so a misplaced norm weight shows
    model.vocab = vocab
    return model.eval()


def window_ids(vocab, seed=0, frames=4, residues=9):
    rng = np.random.default_rng(seed)
    seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), residues))
    ids, _ = vocab.example(seq, rng.integers(0, vocab.codebook_size, (frames, residues)))
    return ids


def torch_logits(model, ids):
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(ids))[None])[0].numpy()


def test_rotary_permutation_turns_halves_into_interleaved_pairs():
    """q_proj rows permuted for GGUF, rotated pairwise, equal the HF-style rotation of the original."""
    torch.manual_seed(0)
    n_heads, hd, hidden = 2, 8, 16
    w = torch.randn(n_heads * hd, hidden)
    x = torch.randn(5, hidden)
    cos, sin = rotary_tables(torch.arange(5), hd, 10000.0)
    q = (x @ w.t()).view(5, n_heads, hd).transpose(0, 1)
    halves = apply_rotary(q, cos, sin)  # (heads, T, hd)

    wp = torch.from_numpy(interleave_rotary_rows(w.numpy(), n_heads))
    qp = (x @ wp.t()).view(5, n_heads, hd).transpose(0, 1)
    angle = torch.atan2(sin[:, : hd // 2], cos[:, : hd // 2])  # (T, hd/2), theta_i * pos
    even, odd = qp[..., 0::2], qp[..., 1::2]
    rot = torch.stack([even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()], -1)
    interleaved = rot.reshape(n_heads, 5, hd)
    # same vectors up to the permutation, hence the same attention scores
    perm = torch.from_numpy(interleave_rotary_rows(np.arange(hd)[:, None].astype(np.float32), 1))[:, 0].long()
    assert torch.allclose(interleaved, halves[..., perm], atol=1e-5)


def test_f32_gguf_matches_pytorch(tmp_path):
    model = parity_model()
    ids = window_ids(model.vocab)
    path = write_gguf(model, tmp_path / "m.f32.gguf", "f32")
    diff = np.abs(gguf_logits(path, ids) - torch_logits(model, ids)).max()
    print(f"F32 max |logit diff| = {diff:.3g} over {len(ids)} tokens")
    assert diff <= 1e-3
    # the same through llama-cpp-python's high-level Llama class (F32 KV cache, no flash attention)
    import llama_cpp

    llm = llama_cpp.Llama(
        str(path),
        n_ctx=len(ids),
        n_batch=len(ids),
        logits_all=True,
        n_threads=1,
        type_k=0,
        type_v=0,
        flash_attn=False,
        verbose=False,
    )
    llm.eval(ids.tolist())
    high_level = np.asarray(llm.scores[: len(ids)])
    llm.close()
    assert np.abs(high_level - torch_logits(model, ids)).max() <= 1e-3


def test_f16_and_q8_0_close_to_pytorch(tmp_path):
    model = parity_model()
    ids = window_ids(model.vocab)
    ref = torch_logits(model, ids)
    sizes = {}
    for kind, bound in (("f16", 0.05), ("q8_0", 0.5)):
        path = write_gguf(model, tmp_path / f"m.{kind}.gguf", kind)
        sizes[kind] = path.stat().st_size
        out = gguf_logits(path, ids)
        diff = np.abs(out - ref).max()
        agree = (out.argmax(-1) == ref.argmax(-1)).mean()
        print(f"{kind}: max |logit diff| = {diff:.3g}, argmax agreement {agree:.3f}, {sizes[kind]} bytes")
        assert diff < bound and agree > 0.9
    assert sizes["q8_0"] < sizes["f16"]


def test_lora_merged_export_matches_unmerged_pytorch(tmp_path):
    model = parity_model(seed=1)
    add_lora(model, rank=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"))
    model.meta["lora"] = {
        "rank": 4,
        "alpha": 8,
        "dropout": 0.0,
        "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
    }
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.1)
    model.eval()
    ids = window_ids(model.vocab, seed=2)
    unmerged = torch_logits(model, ids)
    lm.save(model, tmp_path / "lora")
    path = write_gguf(lm.load(tmp_path / "lora"), tmp_path / "lora.gguf", "f32")
    diff = np.abs(gguf_logits(path, ids) - unmerged).max()
    assert diff <= 1e-3
    # the adapters matter: the base weights alone give other logits
    base = parity_model(seed=1)
    assert np.abs(torch_logits(base, ids) - unmerged).max() > 1e-2


def test_gguf_metadata(tmp_path):
    import gguf

    model = parity_model()
    model.meta["training"] = {"sequences": ["ACDEFGHIK", "KLMNPQRST"]}
    path = write_gguf(model, tmp_path / "m.gguf", "f16")
    meta = read_metadata(path)
    assert meta["n_residues"] == 9 and meta["train_sequences"] == ["ACDEFGHIK", "KLMNPQRST"]
    v = model.vocab
    assert meta["tokenizer_hash"] == HASH and meta["codebook_size"] == K
    assert meta["frame_token_id"] == v.frame_id and meta["structure_offset"] == v.structure_offset
    assert "L structure tokens" in meta["frame_rule"]
    reader = gguf.GGUFReader(str(path))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == v.size and tokens[v.structure_offset] == "<t_0>"
    assert reader.fields["general.architecture"].contents() == "llama"
    names = {t.name for t in reader.tensors}
    assert {
        "token_embd.weight",
        "blk.1.attn_q.weight",
        "blk.0.ffn_gate.weight",
        "output_norm.weight",
        "output.weight",
    } <= names


def test_export_refuses_sliding_window_and_unknown_type(tmp_path):
    model = parity_model()
    with pytest.raises(MdllmError, match="type"):
        write_gguf(model, tmp_path / "x.gguf", "q4_k")
    model.config.sliding_window = 16
    with pytest.raises(MdllmError, match="sliding window"):
        write_gguf(model, tmp_path / "x.gguf", "f32")
    assert not (tmp_path / "x.gguf").exists()


def test_export_cli(tmp_path):
    model = parity_model()
    lm.save(model, tmp_path / "m")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mdllm",
            "export",
            str(tmp_path / "m"),
            "-o",
            str(tmp_path / "m.gguf"),
            "--type",
            "f32",
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    diff = float(r.stdout.strip().split()[-1])
    assert diff <= 1e-3
    r = subprocess.run(
        [sys.executable, "-m", "mdllm", "export", str(tmp_path / "missing"), "-o", str(tmp_path / "n.gguf")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "missing" in r.stderr and not (tmp_path / "n.gguf").exists()


def test_extended_hf_checkpoint_exports_with_parity(tmp_path):
    from test_lm import _write_hf_checkpoint

    _write_hf_checkpoint(tmp_path / "hf")
    model = lm.load_hf(tmp_path / "hf", K, HASH).eval()
    ids = window_ids(model.vocab, frames=2, residues=5)
    assert ids.min() >= 50  # our tokens sit after the 50 base tokens
    path = write_gguf(model, tmp_path / "hf.gguf", "f32")
    assert np.abs(gguf_logits(path, ids) - torch_logits(model, ids)).max() <= 1e-3
    assert read_metadata(path)["vocab_offset"] == 50


SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[1] / "models" / "structure-lm"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").exists(), reason="shipped model not present")
def test_shipped_model_and_its_gguf_agree():
    model = lm.load(SHIPPED)
    gguf_path = SHIPPED / "structure-lm.f16.gguf"
    meta = read_metadata(gguf_path)
    assert meta["tokenizer_hash"] == model.vocab.tokenizer_hash
    assert meta["codebook_size"] == model.vocab.codebook_size
    ids = window_ids(model.vocab, frames=2, residues=12)
    diff = np.abs(gguf_logits(gguf_path, ids) - torch_logits(model, ids)).max()
    assert diff < 0.05  # F16 weights
    try:  # after merging with the tokenizer branch: the model speaks the shipped tokenizer's tokens
        from mdllm.tokenizer import TorsionTokenizer
    except ImportError:
        return
    tokenizer = TorsionTokenizer.load()
    model.check_tokenizer(tokenizer.codebook_size, tokenizer.hash, source="models/torsiontoken")


def frame_span_model(span=64):
    model = parity_model()
    model.config.frame_span = span
    return model


def test_frame_scaled_positions_put_the_previous_frame_one_span_back():
    model = frame_span_model(64)
    for residues in (9, 23):
        ids = torch.from_numpy(window_ids(model.vocab, residues=residues, frames=3))[None]
        pos = model.positions(ids)[0, 0].numpy()
        first = len(ids[0]) - 3 * (residues + 1)  # the first frame's first structure token
        np.testing.assert_allclose(pos[first + residues + 1 :] - pos[first : -(residues + 1)], 64.0, rtol=1e-5)
        np.testing.assert_allclose(pos[1:] - pos[:-1], 64.0 / (residues + 1), rtol=1e-5)


def test_frame_span_gguf_matches_pytorch_for_every_protein_length(tmp_path):
    model = frame_span_model(64)
    path = write_gguf(model, tmp_path / "m.gguf", "f32")
    assert read_metadata(path)["frame_span"] == 64
    plain = parity_model()
    for residues in (9, 23):
        ids = window_ids(model.vocab, residues=residues)
        expected = torch_logits(model, ids)
        assert np.abs(gguf_logits(path, ids) - expected).max() <= 1e-3
        assert np.abs(torch_logits(plain, ids) - expected).max() > 1e-2  # the scaling does change the logits
