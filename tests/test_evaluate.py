"""Comparison metrics against independent computations (mdtraj, numpy, deeptime) and the
``mdllm evaluate`` command end to end on real AdK transition trajectories."""

import json
from pathlib import Path

import numpy as np
import pytest

from mdllm.evaluate import divergence, fluctuations, kinetics
from mdllm.evaluate import states as st
from mdllm.io import load_backbone

md = pytest.importorskip("mdtraj")
ROOT = Path(__file__).resolve().parents[1]
ADK = ROOT / "data" / "adk"


@pytest.fixture(scope="module")
def dims():
    return load_backbone(ADK / "adk_dims.xtc", top=ADK / "adk_dims.pdb")


def ca_traj(backbone):
    """An mdtraj trajectory of the CA atoms only."""
    traj = backbone.to_mdtraj()
    return traj.atom_slice(traj.topology.select("name CA"))


def test_state_rmsd_matches_mdtraj(dims):
    state = st.load_state("open", ADK / "adk_open.pdb", dims.sequence)
    ours = st.rmsd_to_states(dims, [state])[0]
    ref = ca_traj(load_backbone(ADK / "adk_open.pdb"))
    theirs = md.rmsd(ca_traj(dims), ref, 0) * 10.0
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
    assert ours[0] > 6.5 and ours[-1] < 1.0  # the DIMS run goes from closed to open


def test_state_mapping_by_alignment_when_residues_differ(dims, tmp_path):
    """A state file missing residues 1-4 and with residue 100 deleted maps onto the right residues."""
    full = md.load(str(ADK / "adk_open.pdb"))
    keep = [a.index for a in full.topology.atoms if a.residue.resSeq >= 5 and a.residue.resSeq != 100]
    cut = full.atom_slice(keep)
    cut.save_pdb(str(tmp_path / "open_cut.pdb"))
    state = st.load_state("open", tmp_path / "open_cut.pdb", dims.sequence)
    expected = np.array([i for i in range(dims.n_residues) if i + 1 >= 5 and i + 1 != 100])
    np.testing.assert_array_equal(state.traj_residues, expected)
    ca = ca_traj(dims)
    theirs = md.rmsd(ca.atom_slice(expected), ca_traj(load_backbone(tmp_path / "open_cut.pdb", check=False)), 0) * 10.0
    np.testing.assert_allclose(st.rmsd_to_states(dims, [state])[0], theirs, atol=2e-3)


def test_align_sequences_gaps():
    ia, ib = st.align_sequences("MKVLAAGHH", "KVLGHH")
    assert [("MKVLAAGHH"[i], "KVLGHH"[j]) for i, j in zip(ia, ib)] == [
        ("K", "K"),
        ("V", "V"),
        ("L", "L"),
        ("G", "G"),
        ("H", "H"),
        ("H", "H"),
    ]


def test_populations_and_transitions():
    labels = np.array([0, 0, -1, 1, 1, -1, 0, -1, -1, 1])
    names = ["closed", "open"]
    assert st.transition_counts(labels, names) == {"closed->open": 2, "open->closed": 1}
    pops = st.populations(labels, names)
    assert pops == {"closed": 0.3, "open": 0.3, "none of the named states": 0.4}
    rmsd = np.array([[0.5, 3.0, 1.0], [4.0, 3.5, 1.2]])
    np.testing.assert_array_equal(st.assign(rmsd, 1.5), [0, -1, 0])


def test_rmsf_matches_iterative_mdtraj_superposition(dims):
    ours = fluctuations.rmsf_A(dims.xyz[:, :, 1])
    traj = ca_traj(dims)
    mean = traj[0]
    for _ in range(4):  # superpose on the running mean, as rmsf_A does, with mdtraj's own code
        traj.superpose(mean)
        mean = md.Trajectory(traj.xyz.mean(axis=0, keepdims=True), traj.topology)
    theirs = md.rmsf(traj, mean, 0) * 10.0
    np.testing.assert_allclose(ours, theirs, atol=5e-3)
    assert np.argmax(ours) in range(120, 180) or np.argmax(ours) in range(30, 70)  # LID or NMP domain moves most


def test_pairwise_rmsd_matches_mdtraj(dims):
    sub = dims[::10]
    ours = fluctuations.pairwise_rmsd_A(sub.xyz[:, :, 1])
    traj = ca_traj(sub)
    theirs = np.array([md.rmsd(traj, traj, k)[k + 1 :] for k in range(len(traj) - 1)], dtype=object)
    np.testing.assert_allclose(ours, np.concatenate(theirs).astype(float) * 10.0, atol=2e-3)


def test_js_distance_limits():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert divergence.js_1d(a, a) == pytest.approx(0.0, abs=1e-9)
    assert divergence.js_1d(a, a + 100.0) == pytest.approx(1.0)
    assert 0.0 < divergence.js_1d(a, rng.normal(0.5, 1.0, 5000)) < 0.5
    # by formula: p = (1, 0), q = (1/2, 1/2) -> JS divergence (bits) = 0.311278
    assert divergence.js_distance(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(
        np.sqrt(0.311278), rel=1e-4
    )


def test_tica_eigenvalues_match_direct_generalised_eigenproblem(dims):
    features = kinetics.ca_distance_features(dims.xyz[:, :, 1])
    result = kinetics.fit_tica(features, features, lagtime=2, dim=2)
    mean, basis = kinetics.principal_components(features, result.n_pcs)
    x = (features - mean) @ basis
    x0, xt = x[:-2], x[2:]
    mu = np.concatenate([x0, xt]).mean(0)  # reversible (symmetrised) estimate, as deeptime's TICA
    x0, xt = x0 - mu, xt - mu
    c0 = (x0.T @ x0 + xt.T @ xt) / (2 * len(x0))
    ct = (x0.T @ xt + xt.T @ x0) / (2 * len(x0))
    eig = np.sort(np.linalg.eigvals(np.linalg.solve(c0, ct)).real)[::-1][:2]
    np.testing.assert_allclose(result.eigenvalues, eig, rtol=1e-3)
    assert abs(np.corrcoef(result.reference[:, 0], np.arange(len(features)))[0, 1]) > 0.9  # TIC 1 is the transition


def test_msm_timescales_match_numpy():
    rng = np.random.default_rng(3)
    p = np.array([[0.9, 0.1, 0.0], [0.05, 0.9, 0.05], [0.0, 0.1, 0.9]])
    dtraj = [0]
    for _ in range(3000):
        dtraj.append(rng.choice(3, p=p[dtraj[-1]]))
    dtraj = np.array(dtraj)
    for symmetrize in (False, True):
        ours = kinetics.implied_timescales(dtraj, [1, 2], symmetrize=symmetrize)
        for lag, ts in zip(ours.lagtimes, ours.timescales):
            c = np.zeros((3, 3))
            np.add.at(c, (dtraj[:-lag], dtraj[lag:]), 1)
            c = c + c.T  # the reversible MLE of symmetric counts is their row normalisation
            t = c / c.sum(1, keepdims=True)
            lam = np.sort(np.abs(np.linalg.eigvals(t)))[::-1][1:]
            expected = -lag / np.log(lam)
            np.testing.assert_allclose(ts[:2], expected, rtol=0.02 if not symmetrize else 1e-6)
    assert not kinetics.needs_symmetrized_counts(dtraj, [1, 2])
    assert kinetics.needs_symmetrized_counts(np.repeat(np.arange(5), 10), [1])  # one-way trajectory


def test_timescales_of_a_run_that_never_returns_are_missing_not_an_error():
    # 10 frames, each in a new cluster (a short reference run): deeptime finds no connected set to fit
    its = kinetics.implied_timescales(np.arange(10), kinetics.lag_grid(10), symmetrize=False)
    assert its.lagtimes and np.isnan(np.asarray(its.timescales)).all()


def test_cli_report_on_adk_transition(tmp_path):
    """The acceptance run: one DIMS transition judged against another, with closed/open states."""
    from mdllm.cli import main

    out = tmp_path / "report"
    rc = main(
        [
            "evaluate",
            str(ADK / "adk_dims.xtc"),
            "--top",
            str(ADK / "adk_dims.pdb"),
            "--reference",
            str(ADK / "adk_dims2.xtc"),
            "--reference-top",
            str(ADK / "adk_dims2.pdb"),
            "--state",
            f"closed={ADK / 'adk_closed.pdb'}",
            "--state",
            f"open={ADK / 'adk_open.pdb'}",
            "--clusters",
            "8",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    gen = m["states"]["generated"]
    assert gen["per_state"]["open"]["min_rmsd_A"] < 1.0 and gen["per_state"]["closed"]["first_rmsd_A"] < 1.0
    assert gen["rmsd_crossing_frame"] is not None and 20 < gen["rmsd_crossing_frame"] < 80
    assert gen["transitions"] == {"closed->open": 1}
    assert m["validity"]["valid_frames"] == 98
    assert m["comparison"]["rmsf_A"]["pearson_r"] > 0.9
    assert m["kinetics"]["js_distance"]["tic1"] < 0.3
    for name in (
        "rmsd_traces.png",
        "fes_tica.png",
        "fes_states.png",
        "ramachandran.png",
        "rmsf.png",
        "implied_timescales.png",
        "validity.png",
    ):
        assert name in m["plots"] and (out / name).stat().st_size > 10_000
    page = (out / "report.html").read_text()
    assert "RMSD traces cross at frame" in page and "rmsd_traces.png" in page
    # issue 17: the transition stays acceptable, reaches the open state and reads as a transition
    assert m["validity"]["acceptable_fraction"] >= 0.9 and m["global"]["in_reference_basin_fraction"] >= 0.9
    assert gen["per_state"]["open"]["min_rmsd_A"] < 1.5
    assert m["verdict"]["sentence"].startswith("Transition: the ensemble goes from 'closed' to 'open'")
    assert page.index("Transition: the ensemble goes") < page.index("<h2>Summary</h2>")
    # issue 19: frames in no named state are not shown as a state of their own name
    assert "none of the named states" in page and "intermediate" not in page


def test_cli_flags_corrupted_frames_and_bad_input(tmp_path, capsys):
    from mdllm.cli import main
    from mdllm.io import save

    clean = load_backbone(ADK / "adk_gbis_tmd-fast1_NAMD.xtc", top=ADK / "adk_gbis_tmd-fast1_NAMD.pdb", stride=5)
    xyz = clean.xyz.copy()
    xyz[3, 50] += 0.1  # residue displaced by 1.7 A
    xyz[7, 120, [0, 2]] = xyz[7, 120, [2, 0]]  # N and C swapped
    xyz[11, 10, 1, 0] = np.nan
    bad = clean.__class__(xyz, clean.sequence, clean.residue_ids, clean.chain_ids, clean.time)
    save(bad, tmp_path / "corrupt.dcd")
    out = tmp_path / "out"
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "corrupt.dcd"),
                "--top",
                str(tmp_path / "corrupt.pdb"),
                "--no-plots",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert sorted(v["frame"] for v in m["validity"]["invalid"]) == [3, 7, 11]
    assert m["inputs"]["finite_frames"] == len(xyz) - 1
    # bad input: one-line error, exit 1, nothing written
    out2 = tmp_path / "out2"
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "corrupt.dcd"),
                "--top",
                str(tmp_path / "corrupt.pdb"),
                "--state",
                "open",
                "-o",
                str(out2),
            ]
        )
        == 1
    )
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "corrupt.dcd"),
                "--top",
                str(tmp_path / "corrupt.pdb"),
                "--state",
                f"x={ROOT / 'tests' / 'data' / '5AWL.pdb'}",
                "-o",
                str(out2),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mdllm evaluate: error:") and "5AWL.pdb" in err[-1]
    assert not out2.exists()


def test_generation_loglik_is_reported(tmp_path):
    from mdllm.evaluate.pipeline import EvaluateOptions, evaluate
    from mdllm.io import save

    traj = load_backbone(ADK / "adk_dims.xtc", top=ADK / "adk_dims.pdb", stride=8)
    save(traj, tmp_path / "gen.dcd")
    from mdllm.tokenfile import TokenFile

    F, L = traj.n_frames, traj.n_residues
    TokenFile(
        np.zeros((1, F, L), np.int32),
        traj.sequence,
        "h" * 64,
        8,
        loglik=np.linspace(-3, -1, F)[None],
        valid=np.ones((1, F), bool),
    ).save(tmp_path / "gen.tokens.npz")
    m = evaluate(
        tmp_path / "gen.dcd",
        tmp_path / "out",
        top=tmp_path / "gen.pdb",
        options=EvaluateOptions(plots=False, progress=False),
    )
    assert m["kinetics"]["generation_loglik"]["mean_per_frame"] == pytest.approx(-2.0)
    assert m["kinetics"]["generation_loglik"]["frames"] == traj.n_frames


def test_verdict_compares_closest_approach_with_the_training_frames(tmp_path):
    """A new state is one the generated frames reach and the training frames did not: trained on the
    closed half of one DIMS transition, the other transition's open end is new."""
    from mdllm.evaluate.pipeline import EvaluateOptions, evaluate
    from mdllm.io import save

    save(load_backbone(ADK / "adk_dims2.xtc", top=ADK / "adk_dims2.pdb")[:40], tmp_path / "train.xtc")
    m = evaluate(
        ADK / "adk_dims.xtc",
        tmp_path / "out",
        top=ADK / "adk_dims.pdb",
        states={"closed": ADK / "adk_closed.pdb", "open": ADK / "adk_open.pdb"},
        training=[tmp_path / "train.xtc"],
        training_top=tmp_path / "train.pdb",
        options=EvaluateOptions(plots=False, progress=False, n_clusters=8),
    )
    closest = m["states"]["training"]["min_rmsd_A"]
    assert closest["closed"] < 1.5 < 3.0 < closest["open"]
    rows = {r["check"]: r for r in m["verdict"]["rows"]}
    assert rows["closest approach to 'open' (acceptable frames)"]["note"] == "a state the training frames never reached"
    assert rows["closest approach to 'closed' (acceptable frames)"]["note"].startswith(
        "training frames were already there"
    )
    assert "so 'open' is new" in m["verdict"]["sentence"]
    # no reference: judged against the start (first frame) and the size of a folded 214-residue chain;
    # the opening (Rg 16.4 -> 19.4 Å) stays inside 1.3 x the folded expectation
    assert m["inputs"]["start"] == "first generated frame" and m["validity"]["acceptable_fraction"] >= 0.9
