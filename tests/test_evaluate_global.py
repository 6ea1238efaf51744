"""Global checks (compaction, native contacts, distance to the reference) and the verdict, on real
files: an unfolded NTL9 ensemble from the torsion-token generator and held-out frames of NTL9's own MD
(tests/data/PROVENANCE.md)."""

import json
from pathlib import Path

import numpy as np
import pytest

from mdllm.evaluate.plausibility import GlobalCheck, rg_folded_A, rg_unfolded_threshold_A
from mdllm.io import load_backbone, save

pytest.importorskip("deeptime")
DATA = Path(__file__).resolve().parent / "data"
N_REFERENCE = 5  # the first 5 MD frames: what the unfolded ensemble's model was fine-tuned on


@pytest.fixture(scope="module")
def ntl9(tmp_path_factory):
    """Files of the reference (MD frames 0-4), the held-out MD frames (5-10) and the unfolded ensemble."""
    d = tmp_path_factory.mktemp("ntl9")
    md = load_backbone(DATA / "ntl9_md300_bb.xtc", top=DATA / "ntl9_md300_bb.pdb")
    save(md[:N_REFERENCE], d / "reference.xtc")
    save(md[N_REFERENCE:], d / "held_out.xtc")
    unfolded = load_backbone(DATA / "ntl9_torsion_unfolded.xtc", top=DATA / "ntl9_torsion_unfolded.pdb", check=False)
    return {"dir": d, "md": md, "unfolded": unfolded}


def evaluate_cli(ntl9, generated, top, out, capsys):
    from mdllm.cli import main

    d = ntl9["dir"]
    rc = main(
        [
            "evaluate",
            str(generated),
            "--top",
            str(top),
            "--reference",
            str(d / "reference.xtc"),
            "--reference-top",
            str(d / "reference.pdb"),
            "--state",
            f"start={DATA / 'ntl9_md300_bb.pdb'}",
            "--training",
            str(d / "reference.xtc"),
            "--training-top",
            str(d / "reference.pdb"),
            "--no-plots",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads((out / "metrics.json").read_text()), lines, (out / "report.html").read_text()


def test_unfolded_ensemble_is_not_acceptable_and_reads_unfolded(ntl9, tmp_path, capsys):
    m, lines, page = evaluate_cli(
        ntl9, DATA / "ntl9_torsion_unfolded.xtc", DATA / "ntl9_torsion_unfolded.pdb", tmp_path / "unfolded", capsys
    )
    v, g = m["validity"], m["global"]
    assert v["acceptable_fraction"] <= 0.20
    # the global checks alone reject it, not just the local ones
    assert g["plausible_fraction"] <= 0.20 and g["folded_fraction"] <= 0.20
    assert g["rg_A"]["mean"] > 1.5 * g["reference_rg_A"]["mean"] and g["q"]["mean"] < 0.3
    sentence = m["verdict"]["sentence"]
    assert sentence.startswith("Not folded") and "unfolded" in sentence and m["verdict"]["status"] == "red"
    assert lines[-1].startswith("verdict: Not folded")
    assert [r["status"] for r in m["verdict"]["rows"][:4]] == ["red"] * 4
    # the verdict is the first thing on the page, before the long table
    assert page.index("Not folded") < page.index("<h2>Summary</h2>")
    # issue 19: a reference too short for TICA/MSM is said in the report, not only in metrics.json
    assert "TICA needs at least 10 frames" in m["kinetics"]["skipped"]
    assert "Kinetics not compared: TICA needs at least 10 frames" in page


def test_held_out_md_frames_are_acceptable(ntl9, tmp_path, capsys):
    d = ntl9["dir"]
    m, lines, page = evaluate_cli(ntl9, d / "held_out.xtc", d / "held_out.pdb", tmp_path / "held", capsys)
    assert m["validity"]["acceptable_fraction"] >= 0.90
    assert m["global"]["in_reference_basin_fraction"] >= 0.90
    assert m["verdict"]["sentence"].startswith("Folded and inside the reference basin")
    assert lines[-1].startswith("verdict: Folded")
    assert "Not folded" not in page


def test_thresholds_are_derived_from_the_reference_and_the_chain_length(ntl9):
    md = ntl9["md"]
    start = md.xyz[0]
    with_ref = GlobalCheck(start, md.xyz[:N_REFERENCE])
    alone = GlobalCheck(start)
    rg = with_ref.derived["reference_rg_A"]
    sigma = max(rg["std"], 0.02 * rg["mean"])  # the reference's spread, floored at 2 % of Rg
    lo = min(with_ref.start_rg, rg["mean"]) - 4 * sigma
    assert with_ref.rg_band == pytest.approx((lo, max(with_ref.start_rg, rg["mean"]) + 4 * sigma))
    assert with_ref.basin_A >= 1.5 and with_ref.q_min <= 0.6
    n = md.n_residues
    assert rg_folded_A(n) == pytest.approx(2.2 * n**0.38)
    assert alone.rg_band[1] <= rg_unfolded_threshold_A(n)  # never closer to a coil than to a fold
    q = alone.measure(md.xyz)["q"]
    assert q[0] == pytest.approx(1.0, abs=1e-4) and (q > 0.9).all()  # thermal MD keeps its contacts
    swollen = (start - start.mean(axis=(0, 1))) * 2.5  # beyond the tolerance lambda = 1.8 of every contact
    ok, reasons, _ = alone.check(swollen[None])
    assert not ok[0] and {r.split(":")[0] for r in reasons[0]} == {"compaction", "native contacts"}


def test_filter_and_guard_use_the_same_definition(ntl9):
    """generate --filter (Ensemble.check) keeps exactly the frames that evaluate without a reference
    calls acceptable; the guard rejects the unfolded frames for compaction and lost contacts."""
    from mdllm.evaluate import check_backbone
    from mdllm.generate import Ensemble, FrameGuard

    start, unfolded = ntl9["md"].xyz[0], ntl9["unfolded"]
    ens = Ensemble(
        unfolded.xyz[None].copy(),
        np.zeros((1, unfolded.n_frames, unfolded.n_residues), np.int32),
        np.zeros((1, unfolded.n_frames, unfolded.n_residues + 1), np.float32),
        unfolded.sequence,
    )
    ens.check(start_xyz=start)
    plausible, _, _ = GlobalCheck(start).check(unfolded.xyz)
    expected = check_backbone(unfolded).valid & plausible
    np.testing.assert_array_equal(ens.valid[0], expected)
    assert ens.info["validity"]["acceptable_frames"] == expected.sum() <= 0.2 * unfolded.n_frames
    guard = FrameGuard(start)
    assert guard.check(ntl9["md"].xyz).all()
    assert guard.check(unfolded.xyz).mean() <= 0.2
    assert guard.reasons["compaction"] > 0 and guard.reasons["native_contacts"] > 0
