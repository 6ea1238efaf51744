"""Constrained decoding of motion tokens (mdllm.sampling.constraint, cpp/include/mdllm/chain_constraint.hpp):
the compiled mask against its numpy reference on real residues, and generation with the shipped motion
model: frames more often valid before refinement, every drawn code allowed by the mask, likelihoods the
unmodified model's."""

from dataclasses import replace

import numpy as np
import pytest

from conftest import DATA, ROOT
from mdllm import MdllmError, _core, load_backbone
from mdllm.encoding import decode_tokens, load_tokenizers
from mdllm.sampling import SamplingParams
from mdllm.sampling.constraint import ChainConstraint, ConstraintLimits, link_limits

TRPCAGE = DATA / "1L2Y_3models.pdb"  # Trp-cage NMR models, 20 residues
CHIGNOLIN = DATA / "5AWL.pdb"
MOTION_LM = ROOT / "models" / "motion-lm" / "motion-lm.f16.gguf"
TORSION_LM = ROOT / "models" / "structure-lm" / "structure-lm.f16.gguf"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizers()[0]


def constrained_chain(constraint, rng, n_res):
    """Codes drawn residue by residue from each mask (a chain that the constraint shapes, as generation
    builds one)."""
    codes = np.zeros(n_res, np.int32)
    for j in range(n_res):
        allowed, _ = constraint.mask(j, codes)
        codes[j] = rng.choice(np.flatnonzero(allowed))
    return codes


@pytest.mark.parametrize(
    "limits",
    [
        ConstraintLimits(),
        ConstraintLimits(tolerance_nm=0.05, neighbour_cutoff_nm=0.0),
        ConstraintLimits(ramachandran=False, local_reach=2, neighbour_cutoff_nm=1.5, clash_overlap_nm=0.03),
        link_limits(0.01),  # the generation guard's residue check: links only
    ],
)
def test_core_mask_matches_numpy_reference(tokenizer, limits):
    bb = load_backbone(TRPCAGE)
    key = bb.xyz[0]
    c = ChainConstraint(tokenizer.codebook, key, bb.sequence, limits=limits)
    md_codes = tokenizer.encode(bb.xyz[1:], key[None])  # the other NMR models' codes
    rng = np.random.default_rng(0)
    chains = [*md_codes, constrained_chain(c, rng, bb.n_residues), rng.integers(0, tokenizer.codebook_size, 20)]
    some_masked = relaxed = False
    for codes in chains:
        for j in range(bb.n_residues):
            core, n_core = c.mask(j, codes)
            ref, n_ref = c.reference_mask(j, codes)
            assert n_core == n_ref
            np.testing.assert_array_equal(core, ref, err_msg=f"residue {j}")
            some_masked |= 0 < n_core < tokenizer.codebook_size
            # allows() is one entry of the mask under the strict limits (before any relaxation or fallback)
            cand = c.place(j, np.arange(tokenizer.codebook_size))
            placed = lambda i: c.place(i, codes[i])  # noqa: B023, E731 - used at once
            strict = c._reference_allowed(j, placed, cand, limits.tolerance_nm, limits.clash_overlap_nm)
            for code in rng.integers(0, tokenizer.codebook_size, 8):
                assert c.allows(j, codes, code) == bool(strict[code])
            relaxed |= n_core > 0 and not strict.any()
    assert some_masked
    assert relaxed == limits.relax_when_empty  # the random chain leaves some residue nothing strict


def test_placement_is_the_unprojected_decode(tokenizer):
    """The constraint places a residue by its code alone, as decoding without the context decoder."""
    bb = load_backbone(TRPCAGE)
    c = ChainConstraint(tokenizer.codebook, bb.xyz[0], bb.sequence)
    codes = tokenizer.encode(bb.xyz[2:], bb.xyz[0][None])[0]
    placed = np.stack([c.place(i, codes[i]) for i in range(bb.n_residues)])
    plain = tokenizer.decode(codes[None], bb.xyz[0][None], use_context=False)[0]
    np.testing.assert_allclose(placed, plain, atol=1e-6)


def test_chain_breaks_and_empty_masks(tokenizer):
    bb = load_backbone(TRPCAGE)
    key = bb.xyz[0]
    chains = np.array([0] * 10 + [1] * 10)
    c = ChainConstraint(tokenizer.codebook, key, bb.sequence, chain_ids=chains)
    assert not c.core.linked(9) and c.core.linked(8)
    codes = tokenizer.encode(bb.xyz[1:2], key[None])[0]
    # Residue 10 starts a chain: only clashes constrain it, as the numpy reference says.
    np.testing.assert_array_equal(c.mask(10, codes)[0], c.reference_mask(10, codes)[0])
    # A previous residue far out of place leaves nothing allowed: every code is then allowed, counted as 0.
    far = codes.copy()
    far[4] = np.argmax(np.linalg.norm(tokenizer.codebook, axis=1))
    allowed, n = c.mask(5, far)
    assert n == 0 and allowed.all()
    with pytest.raises(MdllmError, match="outside the codebook"):
        c.mask(3, np.array([0, -1, 0], np.int32))
    with pytest.raises(MdllmError, match="key frame of shape"):
        ChainConstraint(tokenizer.codebook, key[:5], bb.sequence)


needs_llama = pytest.mark.skipif(not getattr(_core, "has_llama", False), reason="mdllm built without llama.cpp")


@pytest.fixture(scope="module")
def generator():
    if not MOTION_LM.exists():
        pytest.skip("shipped motion model not present")
    from mdllm.generate import Generator

    return Generator(MOTION_LM)


@needs_llama
def test_constrained_generation_is_more_valid_and_keeps_the_model_likelihood(generator):
    from mdllm.evaluate import check_backbone

    # At the model's own distribution (temperature 1; at the default 0.8 a fine-code base drew Trp-cage's
    # frames without faults) free frames break local geometry for the constraint to mend.
    kw = dict(frames=3, walkers=4, window=2, seed=3, progress=False, guard=False, refine=False)
    kw["params"] = SamplingParams(temperature=1.0)
    free = generator.generate(TRPCAGE, **kw)
    # the mask alone (the decoded check draws outside it; test_constrained_generation_judges_draws_as_decoded)
    ens = generator.generate(TRPCAGE, constrain=True, constraint_limits=ConstraintLimits(decoded_tries=0), **kw)
    assert free.info["constraint"] is None
    info = ens.info["constraint"]
    assert info["constrained_draws"] == 4 * 3 * 19 and info["empty_masks"] < info["constrained_draws"] / 4

    def judged(e):  # frames as they decode (with their fine codes, for a model with them)
        fine = None if e.fine is None else e.fine.reshape(-1, 20)
        raw = decode_tokens(generator.tokenizer, e.tokens.reshape(-1, 20), e.key_xyz, fine=fine)
        return check_backbone(raw, e.sequence)

    before, after = judged(free), judged(ens)
    # Over 12 frames the constraint must not lose valid frames and must cut the local faults it masks
    # (Ramachandran outliers, clashes).
    assert after.valid.mean() >= before.valid.mean()
    assert after.rama_outlier_fraction.mean() < before.rama_outlier_fraction.mean()
    assert after.n_clashes.mean() <= before.n_clashes.mean()

    # Every drawn code was allowed by the mask of the codes before it (or the mask was empty).
    c = ChainConstraint(generator.tokenizer.codebook, ens.key_xyz, ens.sequence)
    empty = 0
    for codes in ens.tokens.reshape(-1, 20):
        for j in range(1, 20):
            allowed, n = c.mask(j, codes)
            empty += n == 0
            assert allowed[codes[j]]
    assert empty == info["empty_masks"]

    # Log-probabilities are the unmodified model's: teacher-forced scoring of the same tokens.
    bb = load_backbone(TRPCAGE)[-2:]
    prefix, start_codes, _, start_fine = generator._context(bb)
    layout = generator.layout(20)
    offset = generator.vocab.structure_offset
    for w in range(4):
        ids = (np.concatenate([start_codes, ens.tokens[w]]) + offset).astype(np.int32)
        if start_fine is None:
            per_token = generator.llama.score(prefix.astype(np.int32), ids.ravel(), layout, 2)
        else:  # a model with fine codes: its fine tokens' likelihoods too
            fine = generator.fine_ids_of(np.concatenate([start_fine, ens.fine[w]])).ravel()
            per_token, per_fine = generator.llama.score(prefix.astype(np.int32), ids.ravel(), layout, 2, fine)
            np.testing.assert_allclose(per_fine[2:], ens.fine_logprobs[w], atol=2e-3)
        np.testing.assert_allclose(per_token[2:], ens.token_logprobs[w], atol=2e-3)


@needs_llama
def test_constraint_options_and_errors(generator, tmp_path):
    kw = dict(frames=1, walkers=2, window=1, seed=0, progress=False, guard=False, refine=False)
    loose = generator.generate(CHIGNOLIN, constrain=True, constraint_limits=ConstraintLimits(tolerance_nm=0.1), **kw)
    tight = generator.generate(CHIGNOLIN, constrain=True, **kw)
    assert loose.info["constraint"]["mean_allowed_codes"] > tight.info["constraint"]["mean_allowed_codes"]
    assert loose.info["constraint"]["limits"]["tolerance_nm"] == 0.1
    # The guard still redraws frames on top of the constraint.
    guarded = generator.generate(CHIGNOLIN, constrain=True, **{**kw, "guard": True})
    assert guarded.info["guard"]["frames"] == 2
    with pytest.raises(MdllmError, match="tolerances"):
        generator.generate(CHIGNOLIN, constrain=True, constraint_limits=replace(ConstraintLimits(), break_nm=0), **kw)
    if TORSION_LM.exists():
        from mdllm.generate import Generator

        with pytest.raises(MdllmError, match="motion-token model"):
            Generator(TORSION_LM).generate(CHIGNOLIN, constrain=True, **kw)

    from conftest import run_mdllm

    out = tmp_path / "c.pdb"
    r = run_mdllm("generate", MOTION_LM, "--start", CHIGNOLIN, "--frames", 1, "--constrain", "--no-guard", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "constraint:" in r.stdout and out.exists()


def random_decoder(path, ahead, seed=0):
    """A small random context decoder (window 3) that moves residues a little, saved to ``path``."""
    import torch

    from mdllm.tokenizer.motion_context import ContextDecoder, feature_size
    from mdllm.tokenizer.motion_context_train import network, network_tensors

    torch.manual_seed(seed)
    d = feature_size(3, 0, ahead)
    ContextDecoder(network_tensors(network(d, 16), np.zeros(d), np.full(d, 20.0)), 3, ahead=ahead).save(path)
    return ContextDecoder.load(path)


def test_decoded_judgement_matches_numpy_reference(tokenizer, tmp_path):
    """allows_decoded (the core, with a causal context decoder attached) against the numpy reference on
    the decoder's own output; a decoder that looks ahead is refused."""
    from mdllm.tokenizer.motion import place_displacements
    from mdllm.tokenizer.motion_context import key_segments, residue_classes

    bb = load_backbone(TRPCAGE)
    key = bb.xyz[0]
    classes = residue_classes(bb.sequence, key_segments(key))
    c = ChainConstraint(tokenizer.codebook, key, bb.sequence)
    ahead = random_decoder(tmp_path / "ahead1.safetensors", ahead=1)
    with pytest.raises(MdllmError, match="causal"):
        c.judge_decoded(_core.MotionContextDecoder(str(ahead.path), tokenizer._cpp), classes)
    with pytest.raises(MdllmError, match="attached decoder"):
        c.allows_decoded(3, np.zeros(20, np.int32))
    dec = random_decoder(tmp_path / "causal.safetensors", ahead=0)
    c.judge_decoded(_core.MotionContextDecoder(str(dec.path), tokenizer._cpp), classes)
    rng = np.random.default_rng(4)
    chains = [*tokenizer.encode(bb.xyz[1:], key[None]), constrained_chain(c, rng, 20)]
    chains.append(rng.integers(0, tokenizer.codebook_size, 20).astype(np.int32))
    verdicts = []
    for codes in chains:
        decoded = place_displacements(dec.displacements(codes[None], tokenizer.codebook, key, bb.sequence), key)[0]
        for j in range(1, 20):
            verdict = c.allows_decoded(j, codes)
            assert verdict == c.reference_allows_decoded(j, decoded), f"residue {j}"
            verdicts.append(verdict)
    assert any(verdicts) and not all(verdicts)


@needs_llama
def test_constrained_generation_judges_draws_as_decoded(tmp_path):
    """With a causal context decoder beside the tokenizer, every drawn code passes allows_decoded unless
    counted as kept after the last try; judging in parallel draws what judging serially does; the check
    sends codes back and can be switched off."""
    import shutil

    if not MOTION_LM.exists():
        pytest.skip("shipped motion model not present")
    from mdllm.generate import Generator
    from mdllm.geometry import set_num_threads
    from mdllm.tokenizer.motion_context import FILE_NAME, key_segments, residue_classes

    tok_dir = tmp_path / "motiontoken"
    shutil.copytree(ROOT / "models" / "motiontoken", tok_dir)
    random_decoder(tok_dir / FILE_NAME, ahead=0)
    gen = Generator(MOTION_LM, tokenizer=tok_dir)
    kw = dict(frames=2, walkers=3, window=2, seed=1, progress=False, guard=False, refine=False, constrain=True)
    ens = gen.generate(TRPCAGE, **kw)
    info = ens.info["constraint"]
    assert info["decoded_check"] and info["decoded_redraws"] > 0
    c = ChainConstraint(gen.tokenizer.codebook, ens.key_xyz, ens.sequence)
    c.judge_decoded(gen.tokenizer.core_context_decoder(), residue_classes(ens.sequence, key_segments(ens.key_xyz)))
    failed = sum(not c.allows_decoded(j, codes) for codes in ens.tokens.reshape(-1, 20) for j in range(1, 20))
    assert failed == info["decoded_kept"]
    set_num_threads(1)  # walkers and scanned codes judged one at a time: the same draws and counts
    try:
        serial = gen.generate(TRPCAGE, **kw)
    finally:
        set_num_threads(0)
    assert np.array_equal(serial.tokens, ens.tokens)
    assert serial.info["constraint"]["decoded_redraws"] == info["decoded_redraws"]
    off = gen.generate(TRPCAGE, constraint_limits=ConstraintLimits(decoded_tries=0), **kw)
    assert not off.info["constraint"]["decoded_check"] and off.info["constraint"]["decoded_redraws"] == 0


@needs_llama
def test_constrained_generation_across_a_chain_gap(generator, tmp_path):
    """The shipped (causal) decoder judges draws as decoded on a start structure with missing residues:
    the check runs, frames come out, and the gap stays a gap."""
    import mdtraj

    traj = mdtraj.load(str(TRPCAGE))
    gapped = traj.atom_slice(traj.topology.select("not (resid 8 to 9)"))[0]
    start = tmp_path / "gap.pdb"
    gapped.save_pdb(str(start))
    ens = generator.generate(
        start, frames=2, walkers=2, window=1, seed=0, progress=False, guard=False, refine=False, constrain=True
    )
    info = ens.info["constraint"]
    assert info["decoded_check"] and info["constrained_draws"] == 2 * 2 * 17  # 18 residues, no draw judged at 0
    raw = decode_tokens(generator.tokenizer, ens.tokens.reshape(-1, 18), ens.key_xyz, sequence=ens.sequence)
    gap = np.linalg.norm(raw[:, 8, 0] - raw[:, 7, 2], axis=-1)  # C(7)-N(8) across the missing residues
    assert (gap > 0.3).all()
