"""Frame repair of motion tokens (mdllm.sampling.repair, cpp/include/mdllm/frame_repair.hpp): the core's
faults against the numpy reference and check_backbone on real residues, a repair that restores a
corrupted frame with the codes the logits favour, and generation with the shipped motion model: frames
repaired, likelihoods the model's of the codes kept, and the context evaluated again after a repair."""

import numpy as np
import pytest

from conftest import DATA, ROOT
from mdllm import MdllmError, _core, load_backbone
from mdllm.encoding import decode_tokens, load_tokenizers
from mdllm.evaluate import check_backbone
from mdllm.sampling.repair import FrameRepair, RepairLimits, reference_faults

TRPCAGE = DATA / "1L2Y_3models.pdb"  # Trp-cage NMR models, 20 residues
MOTION_LM = ROOT / "models" / "motion-lm" / "motion-lm.f16.gguf"
TORSION_LM = ROOT / "models" / "structure-lm" / "structure-lm.f16.gguf"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizers()[0]


def noisy_frames(tokenizer, bb, n, fraction, seed=0):
    """Codes of the NMR models with a fraction of residues replaced by random codes, n frames."""
    key = bb.xyz[0]
    codes = tokenizer.encode(bb.xyz, key[None])
    rng = np.random.default_rng(seed)
    frames = codes[rng.integers(0, len(codes), n)].copy()
    swap = rng.random(frames.shape) < fraction
    frames[swap] = rng.integers(0, tokenizer.codebook_size, swap.sum())
    return frames


@pytest.mark.parametrize("chains", [None, ["A"] * 10 + ["B"] * 10])
def test_core_faults_match_reference_and_check_backbone(tokenizer, chains):
    bb = load_backbone(TRPCAGE)
    key = bb.xyz[0]
    repair = FrameRepair(tokenizer, key, bb.sequence, chains)
    frames = noisy_frames(tokenizer, bb, 24, 0.15)
    xyz = decode_tokens(tokenizer, frames, key, sequence=bb.sequence)
    report = check_backbone(xyz, bb.sequence, chain_ids=chains)
    if chains is None:  # split in two, the bonded residues 9 and 10 clash across the chains in every frame
        assert 0 < report.valid.sum() < len(frames)  # both kinds of frame are judged
    kinds = set()
    for codes, x, valid in zip(frames, xyz, report.valid):
        np.testing.assert_allclose(repair.decode(codes), x, atol=1e-4)  # the frame as generation decodes it
        core, ref = repair.faults(x), reference_faults(x, bb.sequence, chains)
        assert sorted(core["rama"]) == ref["rama"]
        assert sorted(map(tuple, core["geometry"])) == sorted(ref["geometry"])
        assert sorted(map(tuple, core["clashes"])) == sorted(ref["clashes"])
        assert core["defined"] == ref["defined"] and core["score"] == ref["score"]
        assert core["valid"] == ref["valid"] == bool(valid)
        kinds |= {k for k in ("rama", "geometry", "clashes") if core[k]}
    assert kinds == {"rama", "geometry", "clashes"}


def backbone(name):
    if name == "ntl9":  # 51 residues: a code is first judged on the 25 residues around it
        return load_backbone(DATA / "ntl9_md300_bb.xtc", top=DATA / "ntl9_md300_bb.pdb")
    return load_backbone(TRPCAGE)


@pytest.mark.parametrize("protein", ["trpcage", "ntl9"])
def test_repair_restores_a_corrupted_frame_with_the_codes_the_model_favours(tokenizer, protein):
    bb = backbone(protein)
    key, n_res = bb.xyz[0], bb.n_residues
    repair = FrameRepair(tokenizer, key, bb.sequence)
    frames = tokenizer.encode(bb.xyz[1:], key[None])
    truth = next(c for c in frames if repair.faults(repair.decode(c))["valid"])
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(n_res, tokenizer.codebook_size)).astype(np.float32)
    logits[np.arange(n_res), truth] += 10.0  # the model's favourite at every residue is the true code
    for trial in range(20):
        codes = truth.copy()
        bad = rng.choice(np.arange(1, n_res - 1), 3, replace=False)
        codes[bad] = rng.integers(0, tokenizer.codebook_size, 3)
        before = repair.faults(repair.decode(codes))
        if before["valid"]:
            continue
        fixed, outcome = repair.repair(codes, logits)
        after = repair.faults(repair.decode(fixed))
        assert outcome["valid"] == after["valid"] and not outcome["was_valid"]
        assert after["valid"] and after["score"] < before["score"]
        changed = np.flatnonzero(fixed != codes)
        assert 0 < len(changed) <= outcome["changed"] <= 6
        # only residues a fault implicates move (the corrupted ones or their neighbours), each to one of
        # its 64 most likely codes
        assert all(np.abs(bad - r).min() <= 1 for r in changed)
        assert all(logits[r, fixed[r]] >= np.sort(logits[r])[-64] for r in changed)
        break
    else:
        pytest.fail("no corrupted frame was invalid")
    # A valid frame is left alone; nothing to try leaves an invalid one as it is.
    same, outcome = repair.repair(truth, logits)
    assert np.array_equal(same, truth) and outcome == {"changed": 0, "judged": 0, "valid": True, "was_valid": True}
    none = FrameRepair(tokenizer, key, bb.sequence, limits=RepairLimits(max_changes=0))
    kept, outcome = none.repair(codes, logits)
    assert np.array_equal(kept, codes) and not outcome["valid"]


def test_repair_refuses_bad_input(tokenizer):
    bb = load_backbone(TRPCAGE)
    with pytest.raises(MdllmError, match="key frame"):
        FrameRepair(tokenizer, bb.xyz[0][:5], bb.sequence)
    with pytest.raises(MdllmError, match="candidates"):
        FrameRepair(tokenizer, bb.xyz[0], bb.sequence, limits=RepairLimits(candidates=0))
    repair = FrameRepair(tokenizer, bb.xyz[0], bb.sequence)
    with pytest.raises(MdllmError, match="outside"):
        repair.repair(np.full(20, tokenizer.codebook_size), np.zeros((20, tokenizer.codebook_size)))


needs_llama = pytest.mark.skipif(not getattr(_core, "has_llama", False), reason="mdllm built without llama.cpp")


@needs_llama
def test_repaired_generation_is_valid_and_its_context_follows_the_codes_kept(tmp_path):
    if not MOTION_LM.exists():
        pytest.skip("shipped motion model not present")
    from mdllm.generate import Generator

    gen = Generator(MOTION_LM)
    kw = dict(frames=4, walkers=3, window=2, seed=0, progress=False, guard=False, refine=False)
    free = gen.generate(TRPCAGE, **kw)
    ens = gen.generate(TRPCAGE, repair=True, **kw)
    info = ens.info["repair"]
    assert free.info["repair"] is None and info["frames"] == 12
    assert info["frames_repaired"] > 0 and info["codes_changed"] >= info["frames_repaired"]

    def judged(e):
        fine = None if e.fine is None else e.fine.reshape(-1, 20)
        raw = decode_tokens(gen.tokenizer, e.tokens.reshape(-1, 20), e.key_xyz, sequence=e.sequence, fine=fine)
        return check_backbone(raw, e.sequence)

    before, after = judged(free), judged(ens)
    assert after.valid.sum() == 12 - info["frames_left_invalid"]
    assert after.valid.mean() > before.valid.mean()
    # Same seed, same draws up to the first repair: a walker's first frame that differs from the free
    # draw differs only where it was repaired.
    diff = ens.tokens != free.tokens
    assert diff.any()
    for w in np.flatnonzero(diff.any(axis=(1, 2))):
        first = np.flatnonzero(diff[w].any(axis=1))[0]
        assert diff[w, first].sum() <= info["codes_changed"]

    # Likelihoods are the model's of the codes kept, and each later frame was drawn after the repaired
    # one: teacher-forced scoring of the whole trajectory reproduces them (it would not if llama.cpp's
    # cache still held the codes first drawn).
    bb = load_backbone(TRPCAGE)[-2:]
    prefix, start_codes, _, start_fine = gen._context(bb)
    offset = gen.vocab.structure_offset
    for w in range(3):
        ids = (np.concatenate([start_codes, ens.tokens[w]]) + offset).astype(np.int32)
        if start_fine is None:
            per_token = gen.llama.score(prefix.astype(np.int32), ids.ravel(), gen.layout(20), 2)
        else:  # a model with fine codes: its fine tokens' likelihoods too
            fine = gen.fine_ids_of(np.concatenate([start_fine, ens.fine[w]])).ravel()
            per_token, per_fine = gen.llama.score(prefix.astype(np.int32), ids.ravel(), gen.layout(20), 2, fine)
            np.testing.assert_allclose(per_fine[2:], ens.fine_logprobs[w], atol=2e-3)
        np.testing.assert_allclose(per_token[2:], ens.token_logprobs[w], atol=2e-3)

    # With the guard on top, the guard judges repaired frames; repair needs a motion-token model.
    guarded = gen.generate(TRPCAGE, repair=True, **{**kw, "guard": True, "frames": 2})
    assert guarded.info["repair"]["frames"] == 6 and guarded.info["guard"]["frames"] == 6
    if TORSION_LM.exists():
        with pytest.raises(MdllmError, match="motion-token model"):
            Generator(TORSION_LM).generate(TRPCAGE, repair=True, **kw)

    from conftest import run_mdllm

    out = tmp_path / "r.pdb"
    r = run_mdllm("generate", MOTION_LM, "--start", TRPCAGE, "--frames", 1, "--repair", "--no-guard", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "repair:" in r.stdout and out.exists()
