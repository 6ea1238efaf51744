"""Backbone validity checks: compiled kernels against their numpy twins, clean MD frames pass,
every deliberately corrupted frame is flagged with the right reason."""

from pathlib import Path

import numpy as np
import pytest

from mdllm.evaluate import ValidityLimits, check_backbone, kernels, kernels_numpy
from mdllm.geometry import ramachandran
from mdllm.evaluate.validity import VDW_RADII_NM, _ideal_table
from mdllm.io import load_backbone

ROOT = Path(__file__).resolve().parents[1]
ADK = ROOT / "data" / "adk"
TESTS = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def adk():
    return load_backbone(ADK / "adk_dims.xtc", top=ADK / "adk_dims.pdb", stride=4)


def corrupt(xyz, rng):
    """Copies of frames with one defect each; returns the new array and the corrupted mask."""
    xyz = xyz.copy()
    n_frames, n_res = xyz.shape[:2]
    bad = np.zeros(n_frames, bool)
    frames = rng.permutation(n_frames)[:12]
    for k, f in enumerate(frames):
        res = rng.integers(5, n_res - 5)
        kind = k % 4
        if kind == 0:  # a residue displaced by 1 A
            direction = rng.normal(size=3)
            xyz[f, res] += 0.1 * direction / np.linalg.norm(direction)
        elif kind == 1:  # N and C of a residue swapped
            xyz[f, res, [0, 2]] = xyz[f, res, [2, 0]]
        elif kind == 2:  # CA of two distant residues swapped
            other = (res + n_res // 2) % n_res
            xyz[f, [res, other], 1] = xyz[f, [other, res], 1]
        else:  # a NaN coordinate
            xyz[f, res, rng.integers(4), rng.integers(3)] = np.nan
        bad[f] = True
    return xyz, bad, frames


def test_clean_md_frames_are_valid(adk):
    report = check_backbone(adk)
    assert report.valid.all(), [r for r in report.reasons if r]
    assert report.rama_favoured_fraction.mean() > 0.9
    # CA radius of gyration of AdK: 16.4 A closed to 19.4 A open (data/adk PDBs)
    assert 16.0 < report.rg_A.min() and report.rg_A.max() < 20.0


@pytest.mark.parametrize("backend", ["cpp", "numpy"])
def test_every_corrupted_frame_flagged_and_no_clean_one(adk, backend):
    xyz, bad, frames = corrupt(adk.xyz, np.random.default_rng(7))
    report = check_backbone(xyz, adk.sequence, backend=backend)
    np.testing.assert_array_equal(report.valid, ~bad)
    kinds = [report.reasons[f][0].split(":")[0] for f in frames]
    assert all(kinds[k] == "non-finite" for k in range(3, 12, 4))
    assert all(kinds[k] in ("geometry", "chain break") for k in range(0, 12, 4))


def test_compiled_kernels_match_numpy(adk):
    rng = np.random.default_rng(1)
    xyz, _, _ = corrupt(adk.xyz, rng)
    xyz = np.nan_to_num(xyz, nan=0.0)  # both agree on NaN too, but keep the comparison on numbers
    xyz[0, 30] = xyz[0, 80] + 0.05  # a hard clash
    chain_end = np.zeros(adk.n_residues, bool)
    chain_end[[99, -1]] = True  # pretend a second chain starts at residue 100
    chain_index = (np.arange(adk.n_residues) >= 100).astype(np.int32)
    ideal = _ideal_table()
    a = kernels.check_bonds(xyz, chain_end, ideal, 6.0, 0.2)
    b = kernels_numpy.check_bonds(xyz, chain_end, ideal, 6.0, 0.2)
    for name in a._fields:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-4, err_msg=name)
    for sep in (2, 4):
        a = kernels.find_clashes(xyz, chain_index, VDW_RADII_NM, 0.04, 0.3, sep)
        b = kernels_numpy.find_clashes(xyz, chain_index, VDW_RADII_NM, 0.04, 0.3, sep)
        for name in a._fields:
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-6, err_msg=name)
    assert a.n_clashes[0] > 0 and a.n_ca_clashes[0] == 1 and tuple(a.worst_pair[0]) == (30, 80)


def test_bond_check_against_mdtraj_geometry():
    """Independent check: an N-CA bond stretched by 0.3 A is the worst bond, with the z-score that
    mdtraj's distance gives, and makes the frame invalid."""
    import mdtraj as md

    bb = load_backbone(TESTS / "5AWL.pdb")
    xyz = bb.xyz.copy()
    n, ca = xyz[0, 4, 0], xyz[0, 4, 1]
    xyz[0, 4, 0] = n + 0.03 * (n - ca) / np.linalg.norm(n - ca)
    traj = md.Trajectory(xyz.reshape(1, -1, 3), bb.topology())
    n_ca = md.compute_distances(traj, [[4 * 4 + 0, 4 * 4 + 1]])[0, 0]
    result = kernels.check_bonds(xyz, bb.chain_ends, _ideal_table(), 12.0, 0.2)
    assert result.worst_bond_res[0] == 4
    assert result.worst_bond_z[0] == pytest.approx(abs(n_ca - 0.1458) / 0.0019, rel=1e-4)
    assert result.n_bond_outliers[0] >= 1
    report = check_backbone(xyz, bb.sequence)
    assert not report.valid[0] and "geometry" in report.reasons[0][0]
    assert check_backbone(bb).valid[0]


def test_ramachandran_regions_and_dihedral_sign():
    """Alpha-helical Trp-cage residues must fall in favoured regions (also checks the phi/psi sign
    convention against mdtraj), and a mirror-image backbone must be mostly outliers."""
    import mdtraj as md

    bb = load_backbone(TESTS / "1L2Y_3models.pdb")
    report = check_backbone(bb)
    phi_md = np.degrees(md.compute_phi(md.load(str(TESTS / "1L2Y_3models.pdb")))[1])
    np.testing.assert_allclose(report.phi_deg[:, 1:], phi_md, atol=1e-2)
    assert report.rama_favoured_fraction.min() > 0.8
    mirrored = check_backbone(bb.xyz * np.array([-1, 1, 1], np.float32), bb.sequence)
    assert mirrored.rama_outlier_fraction.min() > 0.25
    assert not mirrored.valid.any()
    assert ramachandran.residue_classes("AGPAP").tolist() == [0, 1, 2, 3, 2]


def test_rg_limit_and_bad_input(adk):
    report = check_backbone(adk[:3], limits=ValidityLimits(rg_range_A=(5.0, 10.0)))
    assert not report.valid.any() and all("rg" in r[0] for r in report.reasons)
    from mdllm.errors import MdllmError

    with pytest.raises(MdllmError):
        check_backbone(adk.xyz, "A" * 5)
    with pytest.raises(MdllmError):
        check_backbone(adk.xyz, backend="fortran")


def test_filter_frames_keeps_exactly_the_clean_frames(adk):
    from mdllm.evaluate import filter_frames

    xyz, bad, _ = corrupt(adk.xyz, np.random.default_rng(3))
    dirty = adk.__class__(xyz, adk.sequence, adk.residue_ids, adk.chain_ids, adk.time)
    kept, report = filter_frames(dirty)
    assert kept.n_frames == int((~bad).sum()) and report.n_frames == adk.n_frames
    np.testing.assert_array_equal(kept.time, adk.time[~bad])
    np.testing.assert_array_equal(kept.xyz, adk.xyz[~bad])
