"""`mdllm run` end to end on real AdK frames with a tiny base model and the shipped torsion tokenizer:
every stage runs, a second run skips them all, and an interrupted stage runs again."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("deeptime")
from mdllm import _core  # noqa: E402

if not getattr(_core, "has_llama", False):
    pytest.skip("mdllm built without llama.cpp", allow_module_level=True)

import mdtraj as md  # noqa: E402
import torch  # noqa: E402

from conftest import ADK  # noqa: E402
from mdllm.lm import store  # noqa: E402
from mdllm.lm.model import MistralLM, ModelConfig  # noqa: E402
from mdllm.lm.text import Vocabulary  # noqa: E402
from mdllm.pipeline import PRESETS, run  # noqa: E402
from test_generate import make_tokenizer  # noqa: E402

STAGES = ["encode", "finetune", "export", "generate", "evaluate"]


def tiny_model(vocab) -> MistralLM:
    """One layer of width 32: enough to run every stage, small enough for tests."""
    model = MistralLM(
        ModelConfig(
            vocab_size=vocab.size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=2048,
        )
    )
    model.vocab = vocab
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    tok = make_tokenizer(root / "tok")
    torch.manual_seed(0)
    vocab = Vocabulary(codebook_size=tok.codebook_size, tokenizer_hash=tok.hash)
    model = tiny_model(vocab)
    store.save(model, root / "base")
    # 12 AdK frames as the "user's trajectory" (214 residues).
    traj = md.load(str(ADK / "adk_dims.xtc"), top=str(ADK / "adk_dims.pdb"))[:12]
    traj.save_xtc(str(root / "adk12.xtc"))
    return root


def _run(setup, out, **kw):
    params = dict(
        trajectories=[setup / "adk12.xtc"],
        top=ADK / "adk_dims.pdb",
        preset="quick",
        base=setup / "base",
        tokenizer=setup / "tok",
        seed=0,
        frames=3,
        walkers=2,
        window=2,
        train_steps=2,
        train_window=2,
        micro_batch=2,
        rebuild=0,
        refine=False,
    )
    params.update(kw)
    return run(ADK / "adk_closed.pdb", out, **params)


@pytest.mark.slow
def test_run_all_stages_then_skip_then_resume(setup, tmp_path, capsys):
    out = tmp_path / "run"
    summary = _run(setup, out)
    printed = capsys.readouterr().out
    for stage in STAGES:
        assert f"[{stage}] running" in printed
        assert (out / stage / "stage.json").exists()
    assert (out / "evaluate" / "report.html").exists()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(STAGES)  # no decoder to adapt
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert metrics["validity"]["frames"] == 2 * 3  # walkers x frames, every generated frame judged
    assert 0 <= metrics["validity"]["acceptable_frames"] <= metrics["validity"]["valid_frames"] <= 6
    assert json.loads((out / "run.json").read_text())["report"] == summary["report"]
    assert printed.count("report: ") == 1 and printed.rstrip().splitlines()[-1].startswith("verdict: ")

    _run(setup, out)
    printed = capsys.readouterr().out
    assert all(f"[{stage}] up to date, skipped" in printed for stage in STAGES)
    assert printed.count("report: ") == 1  # a cached evaluation still names its report, once

    # An interrupted stage has no stage.json: it runs again, the stages before it are skipped.
    (out / "generate" / "stage.json").unlink()
    _run(setup, out)
    printed = capsys.readouterr().out
    assert "[generate] resuming" in printed and "[export] up to date, skipped" in printed

    # Other settings change the keys of the stages they reach, and only those.
    _run(setup, out, frames=4)
    printed = capsys.readouterr().out
    assert "[finetune] up to date, skipped" in printed and "[generate] running" in printed
    assert "[evaluate] running" in printed


def test_presets_are_documented_sizes():
    assert set(PRESETS) == {"quick", "laptop", "gpu"}
    assert PRESETS["quick"].simulate_ns < PRESETS["laptop"].simulate_ns < PRESETS["gpu"].simulate_ns


@pytest.fixture(scope="module")
def motion_base(tmp_path_factory):
    """A tiny base model of the shipped motion tokens (key-frame fold codes in the prompt)."""
    from mdllm.encoding import load_tokenizers
    from mdllm.lm.model import init_motion_codes

    root = tmp_path_factory.mktemp("motion-base")
    tok, fold = load_tokenizers()
    torch.manual_seed(0)
    vocab = Vocabulary(tok.codebook_size, tok.hash, key_codebook_size=fold.codebook_size, key_tokenizer_hash=fold.hash)
    model = tiny_model(vocab)
    init_motion_codes(model, tok.codebook)
    store.save(model, root / "base")
    return root / "base"


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["gap", "two_chains"])
def test_run_motion_tokens_on_gaps_and_complexes(motion_base, tmp_path, shape):
    """A trajectory with missing residues, and one of two chains, go through every stage (motion tokens
    anchor each residue on its own); the gapped one with frames of a linear surrogate in the fine-tune and
    soft targets over neighbouring codes, the two-chain one with a LoRA fine-tune (merged on export)."""
    traj = md.load(str(ADK / "adk_dims.xtc"), top=str(ADK / "adk_dims.pdb"))[:12]
    if shape == "gap":  # residues 100-104 missing
        traj = traj.atom_slice(traj.topology.select("not (resid 100 to 104)"))
    else:  # residues 120 on as a second chain
        top = md.Topology()
        chains = [top.add_chain(), top.add_chain()]
        for residue in traj.topology.residues:
            r = top.add_residue(residue.name, chains[residue.index >= 120], residue.resSeq)
            for atom in residue.atoms:
                top.add_atom(atom.name, atom.element, r)
        traj = md.Trajectory(traj.xyz, top)
    traj[0].save_pdb(str(tmp_path / "start.pdb"))
    traj.save_xtc(str(tmp_path / "md.xtc"))
    summary = run(
        tmp_path / "start.pdb",
        tmp_path / "run",
        trajectories=[tmp_path / "md.xtc"],
        top=tmp_path / "start.pdb",
        preset="quick",
        base=motion_base,
        seed=0,
        frames=3,
        walkers=2,
        window=2,
        train_steps=2,
        train_window=2,
        micro_batch=2,
        rebuild=0,
        refine=False,
        surrogate_frames=10 if shape == "gap" else 0,
        code_smoothing_A=0.5 if shape == "gap" else 0.0,
        lora_rank=0 if shape == "gap" else 4,
    )
    from mdllm import tokenfile

    surrogate = tmp_path / "run" / "encode" / "surrogate.npz"
    assert surrogate.exists() == (shape == "gap")
    if shape == "gap":
        assert tokenfile.load(surrogate).tokens.shape == (10, traj.n_residues)
    generated = json.loads((tmp_path / "run" / "generate" / "generated.json").read_text())
    assert generated["tokenizer_kind"] == "motion" and generated["guard"]["frames"] == 6
    assert generated["constraint"] is None  # constrained decoding is opt-in (mdllm run --constrain)
    stage = json.loads((tmp_path / "run" / "generate" / "stage.json").read_text())
    assert stage["inputs"]["constrain"] is False and stage["inputs"]["sampling_temperature"] is None
    assert generated["repair"] is None and stage["inputs"]["repair"] is False  # frame repair is opt-in too
    assert generated["temperature"] == 0.8  # the motion model's default sampling temperature
    # frames drawn by other code (a new constraint rule, an upgrade) are not reused
    from mdllm.pipeline import generation_code_digest

    assert stage["inputs"]["code"] == generation_code_digest()
    tuned = json.loads((tmp_path / "run" / "finetune" / "config.json").read_text())
    assert (tuned["lora"] or {}).get("rank", 0) == (0 if shape == "gap" else 4)
    out = md.load(summary["generated"], top=summary["generated"].replace(".xtc", ".pdb"))
    assert out.n_residues == traj.n_residues
    assert (tmp_path / "run" / "evaluate" / "report.html").exists()
