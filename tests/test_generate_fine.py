"""Generation with fine motion codes (mdllm.tokenizer.motion_fine) in the C++ rolling window: a tiny real
GGUF model whose vocabulary has the shipped tokenizer's fine codes, a real start structure. A fine token
follows exactly the structure tokens whose code takes one (<f_none> fills the others' slot), and the likelihoods
the loop records are the model's (teacher-forced scoring reproduces them) with KV shifting, the
re-evaluating reference path, frame repair and the guard."""

import numpy as np
import pytest

pytest.importorskip("torch")
from mdllm import _core  # noqa: E402

if not getattr(_core, "has_llama", False):
    pytest.skip("mdllm built without llama.cpp", allow_module_level=True)

import torch  # noqa: E402

from conftest import DATA  # noqa: E402
from mdllm import load_backbone, tokenfile  # noqa: E402
from mdllm.encoding import decode_file, decode_tokens, load_tokenizers  # noqa: E402
from mdllm.evaluate import check_backbone  # noqa: E402
from mdllm.generate import Generator  # noqa: E402
from mdllm.lm.export import write_gguf  # noqa: E402
from mdllm.lm.gguf_eval import gguf_logits  # noqa: E402
from mdllm.lm.model import MistralLM, ModelConfig, init_motion_codes  # noqa: E402
from mdllm.lm.text import Vocabulary  # noqa: E402
from mdllm.sampling.repair import FrameRepair, RepairLimits  # noqa: E402

TRPCAGE = DATA / "1L2Y_3models.pdb"  # Trp-cage NMR models, 20 residues


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    tok, fold = load_tokenizers()
    fine = tok.fine_codes
    vocab = Vocabulary(
        tok.codebook_size,
        tok.hash,
        key_codebook_size=fold.codebook_size,
        key_tokenizer_hash=fold.hash,
        fine_codebook_size=fine.size,
        fine_hash=fine.hash,
    )
    torch.manual_seed(0)
    model = MistralLM(
        ModelConfig(
            vocab_size=vocab.size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=1024,
            frame_span=256,
        )
    )
    model.vocab = vocab
    init_motion_codes(model, tok.codebook, fine_codebook=fine.codebook)
    path = write_gguf(model, tmp_path_factory.mktemp("fine") / "fine.gguf", "f32")
    return Generator(path)


KW = dict(frames=3, walkers=3, window=2, seed=0, progress=False, guard=False, refine=False)


def teacher_forced(gen, ens, start):
    """(structure + separator, fine) log-probabilities of each walker's frames scored after the start frames."""
    bb = load_backbone(start)[-2:]
    prefix, start_codes, _, start_fine = gen._context(bb)
    out = []
    for w in range(ens.tokens.shape[0]):
        ids = (np.concatenate([start_codes, ens.tokens[w]]) + gen.vocab.structure_offset).astype(np.int32)
        fine = gen.fine_ids_of(np.concatenate([start_fine, ens.fine[w]]))
        lp, fine_lp = gen.llama.score(prefix.astype(np.int32), ids.ravel(), gen.layout(20), 2, fine.ravel())
        out.append((lp[2:], fine_lp[2:]))
    return out


def test_fine_tokens_follow_the_codes_that_take_one_and_likelihoods_are_the_models(generator):
    gen = generator
    ens = gen.generate(TRPCAGE, **KW)
    follows = gen.fine_codes.follows
    assert ens.fine.shape == ens.tokens.shape
    np.testing.assert_array_equal(ens.fine >= 0, follows[ens.tokens])
    assert (ens.fine >= 0).any() and (ens.fine < gen.fine_codes.size).all()
    assert ens.info["fine_hash"] == gen.fine_codes.hash and 0 < ens.info["fine_token_fraction"] < 1
    np.testing.assert_array_equal(ens.fine_logprobs == 0, ens.fine < 0)
    for w, (lp, fine_lp) in enumerate(teacher_forced(gen, ens, TRPCAGE)):
        np.testing.assert_allclose(lp, ens.token_logprobs[w], atol=2e-3)
        np.testing.assert_allclose(fine_lp, ens.fine_logprobs[w], atol=2e-3)
    # The loop's context is the training text (mdllm.lm.text, <f_none> in the slot of codes that take no
    # fine code): llama.cpp on Python's ids of the start frames and walker 0's first frame gives the
    # likelihoods the loop recorded.
    prefix, start_codes, _, start_fine = gen._context(load_backbone(TRPCAGE)[-2:])
    frames = gen.vocab.frames(
        np.concatenate([start_codes, ens.tokens[0, :1]]), np.concatenate([start_fine, ens.fine[0, :1]])
    )
    ids = np.concatenate([prefix, frames])
    logp = torch.log_softmax(torch.as_tensor(gguf_logits(gen.path, ids), dtype=torch.float64), -1).numpy()
    at = np.arange(len(ids) - 41, len(ids))  # frame 0: 20 (structure token, fine slot) pairs and the separator
    np.testing.assert_allclose(logp[at[::2] - 1, ids[at[::2]]], ens.token_logprobs[0, 0], atol=2e-3)
    has = ens.fine[0, 0] >= 0
    np.testing.assert_allclose(logp[at[1::2] - 1, ids[at[1::2]]][has], ens.fine_logprobs[0, 0][has], atol=2e-3)
    # Frames are decoded with their fine codes.
    np.testing.assert_allclose(
        ens.backbones.reshape(-1, 20, 4, 3),
        decode_tokens(
            gen.tokenizer, ens.tokens.reshape(-1, 20), ens.key_xyz, sequence=ens.sequence, fine=ens.fine.reshape(-1, 20)
        ),
        atol=1e-5,
    )
    # The re-evaluating reference path (no KV shifting) draws the same tokens with the same likelihoods.
    naive = gen.generate(TRPCAGE, **{**KW, "frames": 4}, kv_shift=False)
    shifted = gen.generate(TRPCAGE, **{**KW, "frames": 4})
    np.testing.assert_array_equal(naive.tokens, shifted.tokens)
    np.testing.assert_array_equal(naive.fine, shifted.fine)
    np.testing.assert_allclose(naive.token_logprobs, shifted.token_logprobs, atol=2e-3)
    np.testing.assert_allclose(naive.fine_logprobs, shifted.fine_logprobs, atol=2e-3)


def test_repair_keeps_fine_codes_consistent_and_the_guard_judges_them(generator, tmp_path):
    gen = generator
    free = gen.generate(TRPCAGE, **KW)
    limits = RepairLimits(max_changes=6, candidates=16, wide_candidates=64)  # a random model's frames are far off
    ens = gen.generate(TRPCAGE, repair=True, repair_limits=limits, **KW)
    assert ens.info["repair"]["codes_changed"] > 0
    np.testing.assert_array_equal(ens.fine >= 0, gen.fine_codes.follows[ens.tokens])
    raw = decode_tokens(
        gen.tokenizer, ens.tokens.reshape(-1, 20), ens.key_xyz, sequence=ens.sequence, fine=ens.fine.reshape(-1, 20)
    )
    assert check_backbone(raw, ens.sequence).valid.sum() == 9 - ens.info["repair"]["frames_left_invalid"]
    # A tiny random model's frames are far from valid; repair lowers their fault score, judged on the frames
    # as they decode with their fine codes. Each walker's first frame is the same draw before repair.
    judge = FrameRepair(gen.tokenizer, ens.key_xyz, ens.sequence, use_fine=True)
    score = lambda e, w: judge.faults(judge.decode(e.tokens[w, 0], e.fine[w, 0]))["score"]  # noqa: E731
    np.testing.assert_allclose(judge.decode(ens.tokens[0, 0], ens.fine[0, 0]), raw[0], atol=1e-4)
    assert sum(score(ens, w) for w in range(3)) < sum(score(free, w) for w in range(3))
    for w, (lp, fine_lp) in enumerate(teacher_forced(gen, ens, TRPCAGE)):
        np.testing.assert_allclose(lp, ens.token_logprobs[w], atol=2e-3)
        np.testing.assert_allclose(fine_lp, ens.fine_logprobs[w], atol=2e-3)

    guarded = gen.generate(
        TRPCAGE, **{**KW, "guard": True, "refine": True, "frames": 2}, repair=True, repair_limits=limits
    )
    assert guarded.info["guard"]["frames"] == 6
    np.testing.assert_array_equal(guarded.fine >= 0, gen.fine_codes.follows[guarded.tokens])
    # Constrained decoding judges the structure codes; their fine tokens follow them as in free generation.
    constrained = gen.generate(TRPCAGE, **KW, constrain=True)
    np.testing.assert_array_equal(constrained.fine >= 0, gen.fine_codes.follows[constrained.tokens])
    assert constrained.info["constraint"]["constrained_draws"] > 0

    # The token file keeps the fine codes, and `mdllm decode` decodes with them.
    out = tmp_path / "g.pdb"
    guarded.save(out)
    saved = tokenfile.load(tmp_path / "g.tokens.npz")
    np.testing.assert_array_equal(saved.fine, guarded.fine)
    assert saved.fine_hash == gen.fine_codes.hash
    np.testing.assert_allclose(saved.loglik, guarded.frame_loglik, rtol=1e-6)
    decoded = decode_file(tmp_path / "g.tokens.npz", tmp_path / "d.pdb")
    assert load_backbone(decoded[0]).n_frames == 6


def test_cpp_example_generates_with_fine_codes_like_python(generator, cpp_build, tmp_path):
    """The C++ example (no Python) on the fine-code model: its frames are Python's, guard and refinement
    off (Trp-cage's three NMR models start the window, chignolin one structure)."""
    import subprocess

    from conftest import ROOT

    exe = cpp_build / "cpp" / "examples" / "generate_pdb"
    for start, frames, walkers in ((TRPCAGE, 2, 2), (DATA / "5AWL.pdb", 1, 1)):
        out = tmp_path / "fine.pdb"
        args = [exe, generator.path, ROOT / "models" / "motiontoken", start, out, str(frames), str(walkers), "2", "5"]
        r = subprocess.run(args, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        ens = generator.generate(start, **{**KW, "frames": frames, "walkers": walkers, "seed": 5})
        assert (ens.fine >= 0).any()
        from_cpp = load_backbone(out, check=False)
        np.testing.assert_allclose(from_cpp.xyz, ens.backbones.reshape(from_cpp.xyz.shape), rtol=0, atol=1e-4)
    # Without its fine codes the tokenizer cannot serve this model.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "context_decoder.safetensors"):
        (bare / name).write_bytes((ROOT / "models" / "motiontoken" / name).read_bytes())
    fold = ROOT / "models" / "torsiontoken"
    r = subprocess.run(
        [exe, generator.path, bare, TRPCAGE, tmp_path / "x.pdb", "1", "--fold", fold], capture_output=True, text=True
    )
    assert r.returncode == 1 and "no fine_codes.safetensors" in r.stderr, r.stderr
