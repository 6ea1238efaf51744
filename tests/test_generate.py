"""Generation in llama.cpp through the C++ rolling window: real GGUF models exported from tiny
PyTorch models, the shipped torsion tokenizer (models/torsiontoken) and a real start structure."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
from mdllm import _core  # noqa: E402

if not getattr(_core, "has_llama", False):
    pytest.skip("mdllm built without llama.cpp", allow_module_level=True)

import torch  # noqa: E402

from conftest import DATA  # noqa: E402
from conftest import run_mdllm as _cli  # noqa: E402
from mdllm import MdllmError, load_backbone, tokenfile  # noqa: E402
from mdllm.generate import Generator, generate  # noqa: E402
from mdllm.lm.export import write_gguf  # noqa: E402
from mdllm.lm.model import MistralLM, ModelConfig  # noqa: E402
from mdllm.lm.text import Vocabulary  # noqa: E402
from mdllm.sampling import SamplingParams  # noqa: E402
from mdllm.paths import model_path  # noqa: E402
from mdllm.tokenizer import TorsionTokenizer  # noqa: E402

START = DATA / "5AWL.pdb"  # chignolin, 10 residues


def make_tokenizer(directory, beam_width: int = 4):
    """The shipped torsion tokenizer, copied to ``directory``; with another ``beam_width`` it searches the
    same codebook otherwise, which makes it another tokenizer (another token hash)."""
    import shutil

    shutil.copytree(model_path("torsiontoken"), directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "beam_width": beam_width}))
    return TorsionTokenizer.load(directory)


def make_model(path, tokenizer, layers, seed=0, frame_span=0, return_model=False):
    torch.manual_seed(seed)
    vocab = Vocabulary(codebook_size=tokenizer.codebook_size, tokenizer_hash=tokenizer.hash)
    cfg = ModelConfig(
        vocab_size=vocab.size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        frame_span=frame_span,
    )
    model = MistralLM(cfg)
    with torch.no_grad():  # a peaked, position-sensitive distribution so that sampling choices matter
        model.lm_head.weight.mul_(8.0)
    model.vocab = vocab
    path = write_gguf(model, path, "f32")
    return (path, model.eval()) if return_model else path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    tok = make_tokenizer(root / "tok")
    return {
        "tokenizer": tok,
        "two_layers": make_model(root / "m2.gguf", tok, 2),
        "one_layer": make_model(root / "m1.gguf", tok, 1),
        "root": root,
    }


@pytest.fixture(scope="module")
def generator(models):
    return Generator(models["two_layers"], models["tokenizer"])


def test_generates_valid_frames(generator):
    ens = generator.generate(START, frames=5, walkers=3, window=2, seed=1, progress=False)
    assert ens.backbones.shape == (3, 5, 10, 4, 3)
    assert ens.tokens.shape == (3, 5, 10) and ens.tokens.min() >= 0
    assert ens.tokens.max() < generator.tokenizer.codebook_size
    # torsion tokens are not refined: the frames are exactly the decoded tokens, with ideal bonds
    np.testing.assert_allclose(ens.backbones, generator.decode(ens.tokens), atol=1e-6)
    ca_c = np.linalg.norm(ens.backbones[..., 2, :] - ens.backbones[..., 1, :], axis=-1)
    np.testing.assert_allclose(ca_c, np.median(ca_c), atol=1e-3)
    assert ens.token_logprobs.shape == (3, 5, 11) and np.all(ens.token_logprobs <= 0)
    assert ens.frame_loglik.shape == (3, 5)
    assert ens.sequence == load_backbone(START).sequence


def test_refine_keeps_tokens_and_fixes_local_geometry(generator):
    raw = generator.generate(START, frames=3, walkers=2, window=2, seed=3, progress=False)
    ref = generator.generate(START, frames=3, walkers=2, window=2, seed=3, progress=False, refine=True)
    assert np.array_equal(raw.tokens, ref.tokens) and np.array_equal(raw.token_logprobs, ref.token_logprobs)
    assert ref.info["refine"]["rms_displacement_A_max"] > 0 and raw.info["refine"] is None
    from mdllm.evaluate import check_backbone

    before = check_backbone(raw.backbones.reshape(-1, 10, 4, 3), raw.sequence)
    after = check_backbone(ref.backbones.reshape(-1, 10, 4, 3), ref.sequence)
    # torsion tokens decode to ideal bonds and angles; what refinement fixes in the random codes of an
    # untrained model is overlaps and Ramachandran outliers, and it must not break the covalent geometry
    assert after.n_breaks.max() == 0 and after.n_bond_outliers.max() == 0 and after.n_angle_outliers.max() == 0
    assert not before.valid.all() and after.valid.sum() > before.valid.sum()
    assert after.worst_overlap_A.sum() < before.worst_overlap_A.sum()


def test_same_seed_same_tokens_other_seed_other_tokens(generator):
    a = generator.generate(START, frames=4, walkers=2, window=2, seed=5, progress=False)
    b = generator.generate(START, frames=4, walkers=2, window=2, seed=5, progress=False)
    c = generator.generate(START, frames=4, walkers=2, window=2, seed=6, progress=False)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.token_logprobs, b.token_logprobs)
    assert (a.tokens != c.tokens).any()
    assert (a.tokens[0] != a.tokens[1]).any()  # walkers are independent draws


def test_walker_does_not_depend_on_batch_before_arithmetic_differs(generator):
    alone = generator.generate(START, frames=2, walkers=1, window=2, seed=3, progress=False)
    batch = generator.generate(START, frames=2, walkers=4, window=2, seed=3, progress=False)
    # Same random numbers per walker; logits agree to float error, so the first frame is identical.
    np.testing.assert_array_equal(alone.tokens[0, 0], batch.tokens[0, 0])
    np.testing.assert_allclose(alone.token_logprobs[0, 0], batch.token_logprobs[0, 0], atol=1e-3)


def test_kv_shift_matches_re_evaluation_exactly_for_one_layer(models):
    gen = Generator(models["one_layer"], models["tokenizer"])
    kw = dict(frames=6, walkers=2, window=2, seed=2, progress=False, params=SamplingParams(1.0))
    shifted = gen.generate(START, kv_shift=True, **kw)
    naive = gen.generate(START, kv_shift=False, **kw)
    # A one-layer model's cached keys depend only on token and position, so shifting positions is
    # exact up to float error; evictions happen from the second generated frame on.
    np.testing.assert_array_equal(shifted.tokens, naive.tokens)
    np.testing.assert_allclose(shifted.token_logprobs, naive.token_logprobs, atol=5e-3)
    assert naive.info["timing"]["tokens_decoded"] > shifted.info["timing"]["tokens_decoded"]


def test_kv_shift_differs_from_re_evaluation_only_after_an_eviction_with_two_layers(generator):
    kw = dict(frames=4, walkers=1, window=1, seed=2, progress=False)
    shifted = generator.generate(START, kv_shift=True, **kw)
    naive = generator.generate(START, kv_shift=False, **kw)
    # Frame 0 is generated before any eviction (its separator is decoded after the first one).
    np.testing.assert_array_equal(shifted.tokens[0, 0], naive.tokens[0, 0])
    np.testing.assert_allclose(shifted.token_logprobs[0, 0, :-1], naive.token_logprobs[0, 0, :-1], atol=1e-3)


def test_score_reproduces_generation_likelihoods(generator):
    ens = generator.generate(START, frames=4, walkers=1, window=2, seed=4, progress=False)
    start = load_backbone(START)
    start_codes = generator.tokenizer.encode(start)
    traj = np.concatenate([start.xyz, generator.tokenizer.decode(ens.tokens[0])])
    # Scoring re-encodes decoded frames, so score the token ids directly through the core.
    layout = generator.layout(start.n_residues)
    prefix = generator.vocab.prefix(start.sequence).astype(np.int32)
    ids = (np.concatenate([start_codes, ens.tokens[0]]) + generator.vocab.structure_offset).astype(np.int32)
    per_token = generator.llama.score(prefix, ids.ravel(), layout, 2)
    np.testing.assert_allclose(per_token[1:], ens.token_logprobs[0], atol=1e-3)
    assert traj.shape == (5, 10, 4, 3)
    assert generator.score(START, window=2).shape == (1,)


def test_frame_span_model_scores_and_generates_like_pytorch(models, tmp_path):
    """A model with frame-scaled positions (ModelConfig.frame_span): llama.cpp's rolling window scores
    frames as PyTorch does, and generation's likelihoods are the scores of what it drew."""
    path, model = make_model(tmp_path / "span.gguf", models["tokenizer"], 2, frame_span=64, return_model=True)
    gen = Generator(path, models["tokenizer"])
    start = load_backbone(START)
    layout = gen.layout(start.n_residues)
    prefix = gen.vocab.prefix(start.sequence).astype(np.int32)
    codes = np.random.default_rng(0).integers(0, gen.vocab.codebook_size, (3, start.n_residues))
    ids = (codes + gen.vocab.structure_offset).astype(np.int32)
    per_token = gen.llama.score(prefix, ids.ravel(), layout, 4)  # three frames: no eviction
    full, _ = gen.vocab.example(start.sequence, codes)
    with torch.no_grad():
        log_p = torch.log_softmax(model(torch.as_tensor(full)[None])[0].double(), -1).numpy()
    expected = log_p[np.arange(len(prefix) - 1, len(full) - 1), full[len(prefix) :]]
    np.testing.assert_allclose(per_token.ravel(), expected, atol=1e-3)

    ens = gen.generate(START, frames=3, walkers=1, window=2, seed=4, progress=False)
    start_ids = (gen.tokenizer.encode(start) + gen.vocab.structure_offset).astype(np.int32)
    drawn = (ens.tokens[0] + gen.vocab.structure_offset).astype(np.int32)
    scored = gen.llama.score(prefix, np.concatenate([start_ids, drawn]).ravel(), layout, 2)
    np.testing.assert_allclose(scored[1:], ens.token_logprobs[0], atol=1e-3)


def test_save_writes_trajectory_tokens_and_metadata(generator, tmp_path):
    ens = generator.generate(START, frames=3, walkers=2, window=2, seed=1, progress=False)
    written = ens.save(tmp_path / "out.dcd")
    names = sorted(p.name for p in written)
    assert names == ["out.dcd", "out.json", "out.pdb", "out.tokens.npz"]
    # An untrained tokenizer decodes broken chains, so read them back without the gap check.
    back = load_backbone(tmp_path / "out.dcd", top=tmp_path / "out.pdb", check=False)
    assert back.n_frames == 6 and back.n_residues == 10
    np.testing.assert_allclose(back.xyz, ens.backbones.reshape(6, 10, 4, 3), atol=1e-5)
    data = tokenfile.load(tmp_path / "out.tokens.npz")
    np.testing.assert_array_equal(data.tokens, ens.tokens)
    np.testing.assert_allclose(data.loglik, ens.frame_loglik)
    assert data.tokenizer_hash == generator.tokenizer.hash and data.sequence == ens.sequence
    meta = json.loads((tmp_path / "out.json").read_text())
    assert meta["seed"] == 1 and meta["walkers"] == 2 and meta["tokenizer_hash"] == generator.tokenizer.hash
    assert len(meta["model_sha256"]) == 64


def test_refuses_a_different_tokenizer(models):
    other = make_tokenizer(models["root"] / "other_tok", beam_width=2)
    assert other.hash != models["tokenizer"].hash
    with pytest.raises(MdllmError, match="made by tokenizer"):
        Generator(models["two_layers"], other)


def test_refuses_bad_inputs(generator, models, tmp_path):
    with pytest.raises(MdllmError, match="no such model file"):
        generate(tmp_path / "missing.gguf", START)
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(MdllmError, match="bogus.gguf: not a loadable GGUF model"):
        Generator(bogus, models["tokenizer"])
    with pytest.raises(MdllmError, match="at least 1"):
        generator.generate(START, frames=0, progress=False)


def test_generate_and_score_cli(models, tmp_path):
    out = tmp_path / "gen.xtc"
    r = _cli(
        "generate",
        models["two_layers"],
        "--start",
        START,
        "--tokenizer",
        models["root"] / "tok",
        "--frames",
        3,
        "--walkers",
        2,
        "--window",
        2,
        "--top-k",
        8,
        "--seed",
        7,
        "-o",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert "2 walkers x 3 frames" in r.stdout
    for name in ("gen.xtc", "gen.pdb", "gen.tokens.npz", "gen.json"):
        assert (tmp_path / name).exists()
    assert json.loads((tmp_path / "gen.json").read_text())["top_k"] == 8
    r = _cli("score", models["two_layers"], START, "--tokenizer", models["root"] / "tok", "--window", 2)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "frame,loglik" and len(r.stdout.splitlines()) == 2
    r = _cli("generate", tmp_path / "nope.gguf", "--start", START, "-o", tmp_path / "x.dcd")
    assert r.returncode == 1 and "nope.gguf: no such model file" in r.stderr
    assert not (tmp_path / "x.dcd").exists()


@pytest.mark.slow  # builds the C++ library and examples from scratch (cpp_build)
def test_cpp_example_runs_the_whole_loop_like_python(models, generator, cpp_build, tmp_path):
    """cpp/examples/generate_pdb: encode, generate, decode and write a PDB from C++ alone; with the same
    seed it produces the same frames as the Python API (same core, same sampler, same model)."""
    import subprocess

    exe = cpp_build / "cpp" / "examples" / "generate_pdb"
    assert exe.exists(), "llama.cpp was not found by CMake, so the example was not built"
    out = tmp_path / "cpp.pdb"
    r = subprocess.run(
        [exe, models["two_layers"], models["root"] / "tok", START, out, "3", "2", "2", "11"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "2 walkers x 3 frames of 10 residues" in r.stdout
    from_cpp = load_backbone(out, check=False)
    ens = generator.generate(START, frames=3, walkers=2, window=2, seed=11, progress=False)
    assert from_cpp.n_frames == 6
    np.testing.assert_allclose(from_cpp.xyz, ens.backbones.reshape(6, 10, 4, 3), atol=2e-4)
    bad = subprocess.run(
        [exe, models["two_layers"], models["root"] / "tok", tmp_path / "none.pdb", out], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "none.pdb: cannot open" in bad.stderr


def test_filter_keeps_exactly_the_valid_frames(tmp_path):
    """Ensemble.check (generate --filter) on real frames, one of them broken on purpose."""
    from mdllm.generate import Ensemble

    frame = load_backbone(START).xyz[0]
    backbones = np.stack([np.stack([frame] * 3)] * 2)  # 2 walkers x 3 frames
    backbones[1, 1, 5] += 0.8  # displace residue 6 of walker 1, frame 1: chain breaks and clashes
    ens = Ensemble(
        backbones,
        np.zeros((2, 3, 10), np.int32),
        np.zeros((2, 3, 11), np.float32),
        load_backbone(START).sequence,
        info={"tokenizer_hash": "a" * 64, "codebook_size": 1024},
    )
    ens.check()
    np.testing.assert_array_equal(ens.valid, [[True, True, True], [True, False, True]])
    assert ens.info["validity"]["valid_frames"] == 5 and "chain break" in ens.info["validity"]["invalid_reasons"]
    ens.save(tmp_path / "kept.pdb")
    assert load_backbone(tmp_path / "kept.pdb").n_frames == 5
    kept = tokenfile.load(tmp_path / "kept.tokens.npz")
    np.testing.assert_array_equal(kept.valid, ens.valid)
    assert kept.kept_loglik().shape == (5,)
    ens.valid[:] = False
    with pytest.raises(MdllmError, match="no generated frame passed"):
        ens.save(tmp_path / "none.pdb")
    assert not (tmp_path / "none.pdb").exists()


def test_generate_cli_filter(generator, models, tmp_path):
    """The untrained model draws random folds: with the same seed the library call finds no acceptable
    frame (the global checks reject them all), so the command stops with one line and writes nothing.
    Writing only the acceptable frames: test_filter_keeps_exactly_the_valid_frames."""
    ens = generator.generate(START, frames=2, walkers=2, window=2, seed=0, progress=False, filter=True)
    assert not ens.valid.any() and ens.info["validity"]["frames"] == 4
    assert ens.info["validity"]["invalid_reasons"]["native contacts"] >= 1
    out = tmp_path / "f.pdb"
    r = _cli(
        "generate",
        models["two_layers"],
        "--start",
        START,
        "--tokenizer",
        models["root"] / "tok",
        "--frames",
        2,
        "--walkers",
        2,
        "--window",
        2,
        "--seed",
        0,
        "--filter",
        "-o",
        out,
    )
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and "no generated frame passed the validity checks" in lines[-1], r.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_cpp_example_on_the_shipped_models(cpp_build, tmp_path):
    """The embedding example with the shipped structure LM and tokenizer, as a C++ user would run it."""
    import subprocess

    from conftest import ROOT

    model = ROOT / "models" / "structure-lm" / "structure-lm.f16.gguf"
    tokenizer = ROOT / "models" / "torsiontoken"
    if not model.exists() or not (tokenizer / "model.safetensors").exists():
        pytest.skip("shipped models not present")
    out = tmp_path / "shipped.pdb"
    r = subprocess.run(
        [cpp_build / "cpp" / "examples" / "generate_pdb", model, tokenizer, START, out, "2", "2", "2", "3"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    frames = load_backbone(out, check=False)
    assert frames.n_frames == 4 and frames.n_residues == 10 and np.isfinite(frames.xyz).all()


@pytest.mark.slow  # builds the C++ library and examples from scratch (cpp_build)
def test_cpp_example_runs_the_shipped_motion_model_like_python(cpp_build, tmp_path):
    """The default model reads motion tokens: the example encodes the start relative to its last frame
    (the key), puts the key's fold codes (models/torsiontoken, found beside models/motiontoken) in the
    prompt and projects the decoded frames onto the key's local geometry, as the Python API does without
    the guard and refinement, which the example leaves out. With the same seed the tokens are the same,
    so the coordinates agree up to the PDB's rounding to 0.001 Å (5e-5 nm; both sides compute in double
    before float32): atol 1e-4 nm. One token drawn differently would move atoms by at least 0.012 nm, the
    closest two codes of the shipped codebook. A multi-model start (1L2Y, 3 models) checks that the key is
    the last model and the context the last `window` ones."""
    import subprocess

    from conftest import ROOT

    model = ROOT / "models" / "motion-lm" / "motion-lm.f16.gguf"
    tokenizer = ROOT / "models" / "motiontoken"
    if not model.exists() or not (tokenizer / "model.safetensors").exists():
        pytest.skip("shipped models not present")
    exe = cpp_build / "cpp" / "examples" / "generate_pdb"
    generator = Generator(model)
    assert generator.motion
    for start, frames, walkers in ((START, 3, 2), (DATA / "1L2Y_3models.pdb", 1, 1)):
        out = tmp_path / "motion.pdb"
        args = [exe, model, tokenizer, start, out, str(frames), str(walkers), "2", "7"]
        r = subprocess.run(args, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "(motion tokens)" in r.stdout
        ens = generator.generate(
            start, frames=frames, walkers=walkers, window=2, seed=7, progress=False, guard=False, refine=False
        )
        from_cpp = load_backbone(out, check=False)
        np.testing.assert_allclose(from_cpp.xyz, ens.backbones.reshape(from_cpp.xyz.shape), rtol=0, atol=1e-4)

    wrong = tmp_path / "wrong.pdb"
    torsion = ROOT / "models" / "torsiontoken"
    for extra, message in (
        ([torsion], "torsiontoken: not the motion tokenizer this model reads"),
        ([tokenizer, "--fold", tokenizer], "motiontoken: not the torsion tokenizer of the key frame's fold"),
    ):
        r = subprocess.run([exe, model, *extra, START, wrong, "1"], capture_output=True, text=True)
        assert r.returncode == 1 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not wrong.exists()
