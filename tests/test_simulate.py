"""mdllm simulate: real OpenMM runs of chignolin (5AWL) in GBn2 implicit solvent on the CPU platform,
a few hundred 4 fs steps each; interrupted runs resumed and compared frame by frame with an
uninterrupted run of the same seed."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import DATA

pytest.importorskip("openmm")
pytest.importorskip("pdbfixer")

from mdllm.errors import MdllmError  # noqa: E402
from mdllm.simulate import Plan, Preparation, simulate  # noqa: E402
from mdllm.simulate.checkpoint import RunStore  # noqa: E402

CHIGNOLIN = DATA / "5AWL.pdb"
# 50 steps (0.2 ps) between frames, 100 steps of equilibration: seconds on one core.
SHORT = dict(save_every_ps=0.2, equilibrate_ps=0.4, seed=7)
RESUME_FRAMES = 12


def short_plan(frames, **kw):
    return Plan(length_ns=frames * SHORT["save_every_ps"] / 1000.0, **{**SHORT, **kw})


def run_frames(out_dir):
    """(xyz, time, step) of the committed frames of the one run in out_dir."""
    store = RunStore(next(out_dir.glob("T*K_rep*")))
    return store.frames(store.manifest())


def test_chignolin_short_run(tmp_path):
    import mdtraj as md

    from mdllm.io import load_backbone

    out = tmp_path / "run"
    manifests = simulate(
        CHIGNOLIN,
        out,
        plan=short_plan(5, temperatures=(300.0, 360.0)),
        platform="CPU",
        threads=1,
        command="test",
        show_progress=False,
    )
    assert [m["name"] for m in manifests] == ["T300K_rep0", "T360K_rep0"]
    assert manifests[0]["seed"] != manifests[1]["seed"]
    for m in manifests:
        assert m["progress"]["frames"] == 5 and m["progress"]["step"] == 100 + 5 * 50
        assert m["forcefield"] == ["amber14-all.xml", "implicit/gbn2.xml"]
        assert m["physics"]["hydrogen_mass_amu"] == 4.0 and m["physics"]["timestep_fs"] == 4.0
        assert m["system"]["sequence"] == "YYDPETGTWY" and m["system"]["preparation"]["removed"] == {"HOH": 12}
        on_disk = json.loads((out / m["name"] / "manifest.json").read_text())
        assert on_disk["progress"] == m["progress"] and on_disk["commands"] == ["test"]
        traj = md.load(str(out / m["name"] / "trajectory.xtc"), top=str(out / m["name"] / "trajectory.pdb"))
        assert traj.n_frames == 5 and traj.n_atoms == m["n_saved_atoms"] == 93  # heavy atoms of chignolin
        np.testing.assert_allclose(traj.time, [0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-6)
        backbone = load_backbone(out / m["name"] / "trajectory.xtc", top=out / m["name"] / "trajectory.pdb")
        ca = backbone.xyz[:, :, 1]
        ca_ca = np.linalg.norm(ca[:, 1:] - ca[:, :-1], axis=-1)
        assert np.all(np.abs(ca_ca - 0.38) < 0.03), ca_ca  # an intact chain after MD, not an explosion
    # The two temperatures are different trajectories from the same start.
    assert not np.allclose(run_frames_at(out, "T300K_rep0"), run_frames_at(out, "T360K_rep0"))
    # A kill after writing a chunk but before the manifest commit leaves an uncommitted chunk and
    # temporaries; resuming must ignore and delete them. A longer --length extends the same run.
    run_dir = out / "T300K_rep0"
    committed = manifests[0]["progress"]["chunks"]
    stale_chunk = run_dir / "chunks" / f"chunk_{committed + 1:06d}.npz"
    np.savez(stale_chunk, xyz=np.zeros((3, 93, 3), np.float32), time_ps=np.zeros(3), step=np.zeros(3, np.int64))
    (run_dir / ".manifest.x.part.json").write_text("{")
    (run_dir / "trajectory.xtc").unlink()
    again = simulate(
        CHIGNOLIN, out, plan=short_plan(7, temperatures=(300.0,)), platform="CPU", threads=1, show_progress=False
    )
    assert again[0]["progress"]["frames"] == 7
    _, time_ps, step = RunStore(out / "T300K_rep0").frames(again[0])
    np.testing.assert_allclose(time_ps, 0.2 * np.arange(1, 8), atol=1e-9)
    assert np.all(np.diff(step) == 50)
    assert not (run_dir / ".manifest.x.part.json").exists() and not stale_chunk.exists()
    assert md.load(str(run_dir / "trajectory.xtc"), top=str(run_dir / "trajectory.pdb")).n_frames == 7
    # The 360 K run, already finished, lost its trajectory file: a re-run rewrites it from the chunks.
    (out / "T360K_rep0" / "trajectory.xtc").unlink()
    simulate(CHIGNOLIN, out, plan=short_plan(5, temperatures=(360.0,)), platform="CPU", threads=1, show_progress=False)
    assert (
        md.load(str(out / "T360K_rep0" / "trajectory.xtc"), top=str(out / "T360K_rep0" / "trajectory.pdb")).n_frames
        == 5
    )


def run_frames_at(out, name):
    store = RunStore(out / name)
    return store.frames(store.manifest())[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    simulate(
        CHIGNOLIN,
        out,
        plan=short_plan(RESUME_FRAMES),
        platform="CPU",
        threads=1,
        show_progress=False,
        checkpoint_minutes=0,
    )
    return run_frames(out)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_without_duplicate_or_missing_frames(tmp_path, uninterrupted, how):
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "mdllm",
        "--threads",
        "1",
        "simulate",
        str(CHIGNOLIN),
        "-o",
        str(out),
        "--platform",
        "CPU",
        "--length",
        str(RESUME_FRAMES * 0.2 / 1000),
        "--save-every",
        "0.2",
        "--equilibrate",
        "0.4",
        "--seed",
        "7",
        "--checkpoint-minutes",
        "0",
        "--no-progress",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / "T300K_rep0" / "manifest.json"
    frames_at_kill = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if manifest.exists():
            frames_at_kill = json.loads(manifest.read_text())["progress"]["frames"]
            if frames_at_kill >= 3:
                proc.send_signal(how)
                break
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=120)
    assert 3 <= frames_at_kill < RESUME_FRAMES, "the run must be interrupted part-way"
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "resume" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    stopped = json.loads(manifest.read_text())["progress"]["frames"]
    assert frames_at_kill <= stopped < RESUME_FRAMES

    simulate(CHIGNOLIN, out, plan=short_plan(RESUME_FRAMES), platform="CPU", threads=1, show_progress=False)
    xyz, time_ps, step = run_frames(out)
    ref_xyz, ref_time, ref_step = uninterrupted
    assert len(time_ps) == RESUME_FRAMES
    np.testing.assert_array_equal(step, ref_step)
    np.testing.assert_allclose(time_ps, ref_time)
    # Same seed, same platform, one thread: the binary checkpoint continues the identical trajectory.
    np.testing.assert_array_equal(xyz, ref_xyz)
    leftovers = [p.name for p in (out / "T300K_rep0").rglob("*") if ".part" in p.name]
    assert not leftovers
    assert len(list((out / "T300K_rep0" / "state").iterdir())) == 2  # one checkpoint + its XML state


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    simulate(CHIGNOLIN, out, plan=short_plan(1), platform="CPU", threads=1, show_progress=False)
    with pytest.raises(MdllmError, match="save_every_ps"):
        simulate(CHIGNOLIN, out, plan=short_plan(1, save_every_ps=0.4), platform="CPU", threads=1, show_progress=False)


def edited_chignolin(tmp_path, edit):
    lines = CHIGNOLIN.read_text().splitlines()
    path = tmp_path / "edited.pdb"
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


def rename_residue_5(lines):
    return [
        l[:17] + "XYZ" + l[20:] if l.startswith(("ATOM", "HETATM")) and l[22:26].strip() == "5" else l for l in lines
    ]


def drop_residue_5_and_seqres(lines):
    return [
        l
        for l in lines
        if not l.startswith("SEQRES") and not (l.startswith(("ATOM", "HETATM")) and l[22:26].strip() == "5")
    ]


def calcium_for_alpha_carbons(lines):
    """The element column of every CA says calcium, as some writers leave it (data/adk/adk_closed.pdb)."""
    return [
        l[:76] + "CA" + l[78:] if l.startswith("ATOM") and l[12:16].strip() == "CA" and len(l) >= 78 else l
        for l in lines
    ]


@pytest.mark.parametrize(
    "edit, message",
    [
        (rename_residue_5, "unknown residue XYZ 5 in chain A"),
        (drop_residue_5_and_seqres, "chain A is broken between PRO 4 and THR 6"),
        (calcium_for_alpha_carbons, "Check the element columns"),
    ],
)
def test_unparameterisable_input_is_one_line_error_before_any_work(tmp_path, capsys, edit, message):
    from mdllm.cli import main

    start = edited_chignolin(tmp_path, edit)
    out = tmp_path / "out"
    assert main(["simulate", str(start), "-o", str(out), "--length", "0.001", "--platform", "CPU"]) == 1
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("mdllm simulate: error:") and "edited.pdb" in err[0], err
    assert message in err[0]
    assert not out.exists()  # no partial output


def test_chain_selection_of_a_missing_chain_is_refused(tmp_path):
    with pytest.raises(MdllmError, match="no chain B"):
        simulate(CHIGNOLIN, tmp_path / "out", Preparation(chains=("B",)), plan=short_plan(1), show_progress=False)
    assert not (tmp_path / "out").exists()


def test_explicit_solvent_system_with_hydrogen_mass_repartitioning():
    from openmm import NonbondedForce, unit
    from openmm.app import PME

    from mdllm.simulate.prepare import prepare_structure
    from mdllm.simulate.system import Physics, create_system, load_forcefield, solvate

    physics = Physics(solvent="explicit")
    forcefield = load_forcefield(physics)
    prepared = prepare_structure(CHIGNOLIN, forcefield=forcefield)
    topology, _ = solvate(prepared, physics, forcefield)
    names = [r.name for r in topology.residues()]
    assert names[:10] == ["TYR", "TYR", "ASP", "PRO", "GLU", "THR", "GLY", "THR", "TRP", "TYR"]
    assert names.count("HOH") > 500 and names.count("NA") - names.count("CL") == 2  # chignolin has charge -2
    box = topology.getPeriodicBoxVectors()
    assert box[0][0].value_in_unit(unit.nanometer) > 2.5  # protein plus 1 nm padding on each side
    system = create_system(topology, physics, forcefield)
    nonbonded = next(f for f in system.getForces() if isinstance(f, NonbondedForce))
    assert nonbonded.getNonbondedMethod() == NonbondedForce.PME
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.amu) for i in range(system.getNumParticles())])
    atoms = list(topology.atoms())
    protein_h = [a.index for a in atoms if a.element.symbol == "H" and a.residue.name != "HOH"]
    water_h = [a.index for a in atoms if a.element.symbol == "H" and a.residue.name == "HOH"]
    assert np.allclose(masses[protein_h], 4.0) and np.allclose(masses[water_h], 1.008, atol=0.01)
    plain = forcefield.createSystem(topology, nonbondedMethod=PME)
    assert sum(masses) == pytest.approx(
        sum(plain.getParticleMass(i).value_in_unit(unit.amu) for i in range(plain.getNumParticles())), rel=1e-9
    )
