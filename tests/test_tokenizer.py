"""What the two tokenizer kinds share, on the shipped tokenizers (models/torsiontoken: torsion,
models/motiontoken: motion): loading by kind, the token hash that token files and language models are
tied to, the C++ safetensors reader, the encode/decode CLI and the AdK measurements; and the retired
transformer kind, which must be a clear one-line error."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import mdllm
from mdllm import MdllmError, load_backbone, tokenfile
from mdllm.files import sha256_file
from mdllm.paths import model_path
from mdllm.tokenizer import MotionTokenizer, TorsionTokenizer, load_tokenizer
from conftest import run_mdllm

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[1]
FOLD, MOTION = model_path("torsiontoken"), model_path("motiontoken")


@pytest.fixture(scope="module")
def adk():
    return load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf")


@pytest.fixture(scope="module")
def fold():
    return TorsionTokenizer.load()


def test_load_tokenizer_picks_the_kind():
    torsion, motion = load_tokenizer("torsiontoken"), load_tokenizer("motiontoken")
    assert isinstance(torsion, TorsionTokenizer) and torsion.kind == "torsion" and not torsion.needs_key_frame
    assert isinstance(motion, MotionTokenizer) and motion.kind == "motion" and motion.needs_key_frame
    assert torsion.path == FOLD and load_tokenizer().path == FOLD  # no path: the shipped torsion tokenizer
    assert load_tokenizer("foldtoken").path == FOLD  # its name before it was named by its kind
    assert MotionTokenizer.load().path == MOTION
    with pytest.raises(MdllmError, match="a motion tokenizer, not a torsion tokenizer"):
        TorsionTokenizer.load("motiontoken")
    with pytest.raises(MdllmError, match="a torsion tokenizer, not a motion tokenizer"):
        MotionTokenizer.load("torsiontoken")
    assert mdllm.TorsionTokenizer is TorsionTokenizer and mdllm.load_tokenizer is load_tokenizer


def test_fold_tokenizer_is_a_deprecated_alias():
    for module in (mdllm, mdllm.tokenizer):
        with pytest.warns(DeprecationWarning, match="use TorsionTokenizer"):
            assert module.FoldTokenizer is TorsionTokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names warn about nothing
        from mdllm.tokenizer import TorsionTokenizer as again  # noqa: F401
    with pytest.raises(AttributeError):
        mdllm.tokenizer.NoSuchTokenizer  # noqa: B018


def test_hashes_of_the_shipped_tokenizers_are_the_shipped_models_own(fold):
    """The token hash is what every token file and language model is tied to: refactoring the package
    must not move it (the shipped motion base names both tokenizers)."""
    config = json.loads((ROOT / "models/motion-lm/config.json").read_text())
    assert json.dumps(config).count(fold.hash) == 1  # key_tokenizer_hash
    assert json.dumps(config).count(MotionTokenizer.load().hash) == 1  # tokenizer_hash
    assert fold.file_hash == sha256_file(FOLD / "model.safetensors")


def test_token_hash_covers_config_and_every_tensor(fold, tmp_path):
    from mdllm.tokenizer.api import token_hash

    copy = tmp_path / "renamed"
    shutil.copytree(FOLD, copy)
    assert TorsionTokenizer.load(copy).hash == fold.hash  # a copy under another name still matches
    tensors = {k: v.copy() for k, v in fold._tensors.items()}
    assert token_hash(fold.config, tensors) == fold.hash
    tensors["geometry"][0] += 1e-6
    assert token_hash(fold.config, tensors) != fold.hash
    config = json.loads((FOLD / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "beam_width": 2}))
    assert TorsionTokenizer.load(copy).hash != fold.hash


def test_api_shapes_and_determinism(fold, adk):
    tokens = fold.encode(adk)
    assert tokens.dtype == np.int32 and tokens.shape == (10, 214)
    assert tokens.min() >= 0 and tokens.max() < fold.codebook_size
    assert np.array_equal(fold.encode(adk.xyz[3]), tokens[3:4])
    xyz = fold.decode(tokens)
    assert np.array_equal(xyz, fold.decode(tokens)) and np.isfinite(xyz).all()
    assert np.array_equal(fold.decode(tokens[0]), xyz[:1])


def test_weights_other_than_float32_are_a_clear_error(tmp_path):
    """The C++ kernels of both kinds compute on the file's float32 values bit for bit like their
    references, so they refuse a file of another dtype by name rather than widen it."""
    from safetensors.numpy import load_file, save_file

    for source, cls in ((FOLD, TorsionTokenizer), (MOTION, MotionTokenizer)):
        half = tmp_path / source.name
        half.mkdir()
        shutil.copy(source / "config.json", half / "config.json")
        save_file(
            {k: v.astype(np.float16) for k, v in load_file(str(source / "model.safetensors")).items()},
            str(half / "model.safetensors"),
        )
        with pytest.raises(
            MdllmError, match=f"{half / 'model.safetensors'}: tensor codebook has dtype F16, expected F32"
        ):
            cls.load(half, backend="cpp")


def _old_transformer_directory(path, kind_key: bool):
    """A tokenizer directory as the retired transformer kind wrote it (its config.json had no "kind"
    key before the torsion kind existed, "kind": "transformer" after)."""
    path.mkdir()
    shutil.copy(FOLD / "model.safetensors", path / "model.safetensors")
    config = {
        "levels": [8, 5, 5, 5],
        "k_neighbours": 16,
        "n_rbf": 16,
        "rbf_max_nm": 2.0,
        "max_seq_sep": 16,
        "dim": 128,
        "heads": 4,
        "ffn_dim": 256,
        "encoder_layers": 2,
        "decoder_layers": 6,
        "max_rel_pos": 32,
        "version": 1,
    }
    if kind_key:
        config = {"kind": "transformer", **config}
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_retired_transformer_kind_is_a_clear_error(tmp_path, adk):
    from mdllm import _core

    assert not hasattr(_core, "Tokenizer")  # its C++ kernels are gone too
    for kind_key in (False, True):
        old = _old_transformer_directory(tmp_path / f"old{kind_key}", kind_key)
        for load in (load_tokenizer, TorsionTokenizer.load, MotionTokenizer.load):
            with pytest.raises(
                MdllmError, match="the transformer tokenizer kind was retired in mdllm 0.1; use motion or torsion"
            ):
                load(old)
    r = run_mdllm(
        "encode", DATA / "adk_dims_10.dcd", "--top", DATA / "adk.psf", "--tokenizer", old, "-o", tmp_path / "t.npz"
    )
    assert r.returncode != 0 and not (tmp_path / "t.npz").exists()
    assert r.stderr.strip().count("\n") == 0 and "transformer tokenizer kind was retired" in r.stderr
    r = run_mdllm("tokenizer", "train", "--kind", "transformer", "-o", tmp_path / "x")
    assert r.returncode != 0 and "invalid choice: 'transformer'" in r.stderr
    r = run_mdllm("tokenizer", "adapt", "x.xtc", "-o", tmp_path / "x")
    assert r.returncode != 0 and "invalid choice: 'adapt'" in r.stderr


def test_cli_encode_decode(fold, tmp_path):
    from mdllm.cli import main

    npz = tmp_path / "tokens.npz"
    assert (
        main(
            [
                "encode",
                str(DATA / "adk_dims_10.dcd"),
                "--top",
                str(DATA / "adk.psf"),
                "--tokenizer",
                str(FOLD),
                "-o",
                str(npz),
            ]
        )
        == 0
    )
    f = tokenfile.load(npz)
    assert f.tokens.shape == (10, 214) and f.tokens.dtype == np.int32
    assert f.tokenizer_hash == fold.hash
    assert len(f.sequence) == 214
    tokens = f.tokens
    out = tmp_path / "decoded.xtc"
    assert main(["decode", str(npz), "--tokenizer", str(FOLD), "-o", str(out)]) == 0
    import mdtraj as md

    back = md.load(str(out), top=str(tmp_path / "decoded.pdb"))
    assert back.xyz.shape == (10, 214 * 4, 3)
    assert [a.name for a in back.topology.residue(0).atoms] == ["N", "CA", "C", "O"]
    assert back.topology.residue(5).name == md.load_topology(str(DATA / "adk.psf")).residue(5).name
    decoded = fold.decode(tokens)
    np.testing.assert_allclose(back.xyz.reshape(10, 214, 4, 3), decoded, atol=2e-3)  # XTC precision
    # tokens from another tokenizer (the same codebook searched with another beam) are refused
    other = tmp_path / "other"
    shutil.copytree(FOLD, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "beam_width": 2}))
    assert main(["decode", str(npz), "--tokenizer", str(other), "-o", str(tmp_path / "x.pdb")]) == 1
    assert not (tmp_path / "x.pdb").exists()


def test_adk_measurements_and_self_consistency(fold, adk, tmp_path):
    import mdtraj

    from mdllm.tokenizer.evaluate import adk_transitions
    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom

    for name in ("adk_open.pdb", "adk_closed.pdb"):
        shutil.copy(ROOT / "data/adk" / name, tmp_path / name)
    traj = mdtraj.load(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf")
    traj.save_xtc(str(tmp_path / "dims10.xtc"))
    traj[0].save_pdb(str(tmp_path / "dims10.pdb"))
    result = adk_transitions(fold, tmp_path)
    r = result["dims10.xtc"]
    frames = load_backbone(tmp_path / "dims10.xtc", top=tmp_path / "dims10.pdb")
    tokens = fold.encode(frames)
    decoded = fold.decode(tokens)
    assert r["frames"] == 10
    assert r["rmsd_A"]["median"] == pytest.approx(np.median(backbone_rmsd_angstrom(decoded, frames.xyz)))
    assert r["rmsd_A"]["median"] < 0.6  # the shipped codebook (models/torsiontoken/RECIPE.md)
    kept = (fold.encode(decoded) == tokens).mean()
    assert r["reencoded_tokens_kept"] == pytest.approx(kept) and 0.5 < kept <= 1.0
    # state fidelity: how far the round trip moves a frame's distance to the open state
    to_open = np.repeat(load_backbone(tmp_path / "adk_open.pdb").xyz, frames.n_frames, axis=0)
    fidelity = np.abs(backbone_rmsd_angstrom(decoded, to_open) - backbone_rmsd_angstrom(frames.xyz, to_open))
    assert r["state_fidelity_A"]["median"] == pytest.approx(np.median(fidelity))
    assert 0.0 < r["state_fidelity_A"]["median"] < 0.05  # 0.005 Å with the shipped codebook
    assert 0.0 < result["closed_vs_open_tokens_differ"] < 1.0
