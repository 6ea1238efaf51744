"""Generation with motion tokens: the key frame, its fold codes in the prompt, and the guard that draws
rejected frames again (a real GGUF model exported from a tiny PyTorch model, the shipped tokenizers)."""

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("torch")
from mdllm import _core  # noqa: E402

if not getattr(_core, "has_llama", False):
    pytest.skip("mdllm built without llama.cpp", allow_module_level=True)

import torch  # noqa: E402

from conftest import DATA  # noqa: E402
from mdllm import MdllmError, load_backbone, tokenfile  # noqa: E402
from mdllm.encoding import load_tokenizers  # noqa: E402
from mdllm.generate import FrameGuard, Generator, GuardLimits  # noqa: E402
from mdllm.lm.export import write_gguf  # noqa: E402
from mdllm.lm.model import MistralLM, ModelConfig  # noqa: E402
from mdllm.lm.text import Vocabulary  # noqa: E402

START = DATA / "5AWL.pdb"  # chignolin, 10 residues


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    tok, fold = load_tokenizers()
    torch.manual_seed(0)
    vocab = Vocabulary(tok.codebook_size, tok.hash, key_codebook_size=fold.codebook_size, key_tokenizer_hash=fold.hash)
    cfg = ModelConfig(
        vocab_size=vocab.size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    model = MistralLM(cfg)
    with torch.no_grad():  # the same distribution at every position: the 64 smallest motions (codes are
        # sorted by size) and the separator, so frames stay near the key frame
        for name, weight in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                weight.zero_()  # the residual stream keeps the embedding
        model.model.embed_tokens.weight[:] = 1.0  # every token: the same hidden state
        model.lm_head.weight.zero_()
        model.lm_head.weight[vocab.structure_offset : vocab.structure_offset + 64] = 12.0 / cfg.hidden_size
        model.lm_head.weight[vocab.frame_id] = 12.0 / cfg.hidden_size
    model.vocab = vocab
    path = write_gguf(model, tmp_path_factory.mktemp("motion") / "m.gguf", "f32")
    return Generator(path)


def test_motion_model_generates_on_the_key_frame(generator):
    ens = generator.generate(START, frames=3, walkers=2, window=2, seed=1, progress=False, guard=False)
    key = load_backbone(START).xyz[0]
    assert ens.backbones.shape == (2, 3, 10, 4, 3)
    np.testing.assert_allclose(ens.key_xyz, key)
    assert ens.info["tokenizer_kind"] == "motion" and ens.info["guard"] is None
    # every frame lies on the key: the decoded CA atoms are within a few Angstrom of the key's
    ca_shift = np.linalg.norm(ens.backbones[..., 1, :] - key[None, None, :, 1], axis=-1) * 10
    assert ca_shift.max() < 15.0


def test_guard_that_accepts_everything_changes_nothing(generator):
    off = generator.generate(START, frames=3, walkers=2, window=2, seed=4, progress=False, guard=False)
    lenient = GuardLimits(ca_ca_tolerance_A=1e9, ca_clash_A=0.0, rg_ratio=(0.0, 1e9), native_contacts=False)
    on = generator.generate(
        START, frames=3, walkers=2, window=2, seed=4, progress=False, guard=True, guard_limits=lenient
    )
    np.testing.assert_array_equal(on.tokens, off.tokens)
    assert on.info["guard"]["redraws"] == 0 and on.info["guard"]["frames"] == 6


def test_guard_redraws_rejected_frames_and_says_why(generator, tmp_path):
    strict = GuardLimits(ca_ca_tolerance_A=0.0, max_tries=3)  # every drawn frame moves some CA-CA distance
    ens = generator.generate(START, frames=2, walkers=3, window=2, seed=2, progress=False, guard_limits=strict)
    g = ens.info["guard"]
    assert g["frames_redrawn"] == 6 and g["redraws"] == 18 and g["frames_kept_after_last_try"] == 6
    assert g["rejections_by_reason"]["chain_break"] == 6 * 4  # the first draw and three redraws of each frame
    assert (ens.redraws == 3).all()
    written = ens.save(tmp_path / "out.xtc")
    saved = tokenfile.load(written[-2])
    assert saved.redraws.shape == (3, 2) and saved.key_xyz.shape == (10, 4, 3)


def test_guard_redraws_residues_that_break_the_chain(generator):
    from mdllm.sampling.constraint import ChainConstraint, link_limits

    kw = dict(frames=3, walkers=3, window=2, seed=6, progress=False, refine=False)
    tight = 0.3  # Å: some of the model's 64 codes move a residue this far from its neighbour's link
    limits = GuardLimits(residue_ca_ca_tolerance_A=tight, max_tries=0)
    frame_only = generator.generate(START, guard_limits=replace(limits, residue_redraw=False), **kw)
    ens = generator.generate(START, guard_limits=limits, **kw)
    g = ens.info["guard"]
    assert frame_only.info["guard"]["residues_redrawn"] == 0
    assert 0 < g["residues_redrawn"] and g["residue_redraws_kept"] < g["residues_redrawn"]
    assert 0 < g["residue_redraw_fraction"] < 1 and g["frames_with_residue_redraws"] <= 9
    # Every kept code keeps the links (unless nothing could), and redraws changed the frames.
    link = ChainConstraint(generator.tokenizer.codebook, ens.key_xyz, ens.sequence, limits=link_limits(tight / 10))
    broken = [
        (codes, j) for codes in ens.tokens.reshape(-1, 10) for j in range(1, 10) if not link.allows(j, codes, codes[j])
    ]
    assert len(broken) == g["residue_redraws_kept"]
    assert not np.array_equal(ens.tokens, frame_only.tokens)
    # Residue redraws have their own random numbers per walker and step: the same seed, the same frames.
    again = generator.generate(START, guard_limits=limits, **kw)
    np.testing.assert_array_equal(again.tokens, ens.tokens)
    # The recorded likelihoods stay the unmodified model's (the same for each of its 64 codes).
    np.testing.assert_allclose(ens.token_logprobs[..., :-1], frame_only.token_logprobs[..., :-1].max(), atol=1e-4)


def test_guard_judges_and_keeps_the_refined_frames(generator):
    # motion tokens are refined by default; the guard judges the refined draws and the ensemble keeps
    # each walker's last draw without refining again: the same frames as refining the final tokens
    from mdllm.geometry.refine import refine_backbones

    strict = GuardLimits(ca_ca_tolerance_A=0.0, max_tries=2)  # every draw is rejected: redraws happen
    ens = generator.generate(START, frames=3, walkers=2, window=2, seed=5, progress=False, guard_limits=strict)
    assert ens.info["refine"]["frames_reused_from_the_guard"] == 6 and (ens.redraws == 2).all()
    raw = generator.decode(ens.tokens, ens.key_xyz, ens.sequence)
    again = refine_backbones(raw.reshape(-1, 10, 4, 3), ens.sequence).reshape(raw.shape)
    np.testing.assert_allclose(ens.backbones, again, atol=1e-6)
    assert np.abs(ens.backbones - raw).max() > 1e-3  # refinement moved atoms

    plain = generator.generate(START, frames=3, walkers=2, window=2, seed=5, progress=False, guard=False, refine=False)
    assert plain.info["refine"] is None
    np.testing.assert_allclose(
        plain.backbones, generator.decode(plain.tokens, plain.key_xyz, plain.sequence), atol=1e-6
    )


def test_frame_guard_checks():
    key = load_backbone(START).xyz[0]
    guard = FrameGuard(key)
    frames = np.repeat(key[None], 4, axis=0).copy()
    frames[1, 5:] += np.float32([0.3, 0.0, 0.0])  # chain torn between residues 4 and 5
    frames[2] = (frames[2] - frames[2].mean(axis=(0, 1))) * 1.5  # swollen by half
    frames[3, 7] = frames[3, 2]  # residue 7 on top of residue 2
    assert guard.check(frames).tolist() == [True, False, False, False]
    assert guard.reasons["chain_break"] >= 1 and guard.reasons["compaction"] == 1 and guard.reasons["ca_clash"] == 1


def test_motion_model_refuses_a_torsion_tokenizer(generator):
    with pytest.raises(MdllmError, match="made by tokenizer .* but the model was trained with"):
        Generator(generator.path, "torsiontoken")
