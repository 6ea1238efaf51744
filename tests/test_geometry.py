"""The C++ geometry kernels against the numpy reference and against mdtraj, on real trajectories."""

import mdtraj as md
import numpy as np
import pytest

from conftest import DATA
from mdllm import MdllmError, geometry, load_backbone
from mdllm.geometry import _numpy_ref as numpy_ref

NM_TOL = 1e-4
RAD_TOL = 1e-3


@pytest.fixture(scope="module")
def adk():
    return load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf")


@pytest.fixture(scope="module")
def trpcage():
    return load_backbone(DATA / "1L2Y_3models.pdb")


@pytest.fixture(params=["adk", "trpcage"])
def backbone(request):
    return request.getfixturevalue(request.param)


def _angle_diff(a, b):
    d = np.angle(np.exp(1j * (a.astype(np.float64) - b)))
    return np.nanmax(np.abs(d))


def test_dihedrals_match_numpy_and_mdtraj(backbone):
    phi, psi, omega = geometry.dihedrals(backbone)
    for ours, ref in zip((phi, psi, omega), numpy_ref.dihedrals(backbone.xyz)):
        assert np.array_equal(np.isnan(ours), np.isnan(ref))
        assert _angle_diff(ours, ref) < RAD_TOL
    traj = backbone.to_mdtraj()
    assert _angle_diff(phi[:, 1:], md.compute_phi(traj)[1]) < RAD_TOL
    assert _angle_diff(psi[:, :-1], md.compute_psi(traj)[1]) < RAD_TOL
    assert _angle_diff(omega[:, :-1], md.compute_omega(traj)[1]) < RAD_TOL
    assert np.isnan(phi[:, 0]).all() and np.isnan(psi[:, -1]).all() and np.isnan(omega[:, -1]).all()


def test_bond_angles_match_numpy_and_mdtraj(backbone):
    angles = geometry.bond_angles(backbone)
    _, ref_angles, _ = numpy_ref.internal_coordinates(backbone.xyz)
    assert _angle_diff(angles, ref_angles[..., :3]) < RAD_TOL
    traj = backbone.to_mdtraj()
    triples = [[4 * i, 4 * i + 1, 4 * i + 2] for i in range(backbone.n_residues)]  # N-CA-C
    assert _angle_diff(angles[..., 0], md.compute_angles(traj, triples)) < RAD_TOL
    assert 1.8 < np.nanmean(angles[..., 0]) < 2.0  # ~ 111 degrees, a sanity check on units


def test_internal_coordinates_and_nerf_round_trip(backbone):
    ic = geometry.internal_coordinates(backbone)
    ref = numpy_ref.internal_coordinates(backbone.xyz)
    for ours, theirs in zip(ic, ref):
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ic.bonds, ref[0], atol=NM_TOL)
    assert _angle_diff(ic.angles, ref[1]) < RAD_TOL
    assert _angle_diff(ic.torsions, ref[2]) < RAD_TOL
    rebuilt = geometry.nerf(*ic)
    np.testing.assert_allclose(rebuilt, numpy_ref.nerf(*ic), atol=NM_TOL)
    # The rebuilt chain is the original up to a rigid motion.
    for f in range(backbone.n_frames):
        assert geometry.rmsd(rebuilt[f : f + 1], backbone.xyz[f])[0] < NM_TOL


def test_nerf_places_the_first_residue_canonically():
    bonds = np.tile([0.1458, 0.1525, 0.1329, 0.1231], (1, 3, 1)).astype(np.float32)
    angles = np.tile(np.deg2rad([111.0, 116.2, 121.7, 120.5]), (1, 3, 1)).astype(np.float32)
    torsions = np.tile(np.deg2rad([-57.0, -47.0, 180.0, 133.0]), (1, 3, 1)).astype(np.float32)
    xyz = geometry.nerf(bonds, angles, torsions)
    np.testing.assert_allclose(xyz[0, 0, 0], 0, atol=1e-7)
    np.testing.assert_allclose(xyz[0, 0, 1], [0.1458, 0, 0], atol=1e-6)
    assert abs(xyz[0, 0, 2, 2]) < 1e-7
    back = geometry.internal_coordinates(xyz)
    np.testing.assert_allclose(back.bonds[0, :2], bonds[0, :2], atol=1e-6)
    assert _angle_diff(back.torsions[0, 1:, 0], torsions[0, 1:, 0]) < 1e-5


def test_rigid_frames_match_numpy_and_invert(backbone):
    rot, trans = geometry.rigid_frames(backbone)
    ref_rot, ref_trans = numpy_ref.rigid_frames(backbone.xyz)
    np.testing.assert_allclose(rot, ref_rot, atol=1e-5)
    np.testing.assert_allclose(trans, ref_trans, atol=1e-7)
    eye = np.einsum("flji,fljk->flik", rot, rot)
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-5)
    assert np.allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    local = geometry.to_local(rot, trans, backbone.xyz)
    np.testing.assert_allclose(local, numpy_ref.to_local(rot, trans, backbone.xyz), atol=NM_TOL)
    # In its own frame, CA is at the origin, C on +x and N in the xy plane with y > 0.
    np.testing.assert_allclose(local[:, :, 1], 0, atol=1e-6)
    assert np.all(local[:, :, 2, 0] > 0.14) and np.allclose(local[:, :, 2, 1:], 0, atol=1e-5)
    assert np.all(local[:, :, 0, 1] > 0) and np.allclose(local[:, :, 0, 2], 0, atol=1e-5)
    np.testing.assert_allclose(geometry.to_global(rot, trans, local), backbone.xyz, atol=NM_TOL)


def test_rmsd_matches_numpy_and_mdtraj(adk):
    ours = geometry.rmsd(adk, adk.xyz[3])
    ref = numpy_ref.rmsd_to_reference(adk.xyz.reshape(adk.n_frames, -1, 3), adk.xyz[3].reshape(-1, 3))
    np.testing.assert_allclose(ours, ref, atol=NM_TOL)
    traj = adk.to_mdtraj()
    np.testing.assert_allclose(ours, md.rmsd(traj, traj, 3), atol=NM_TOL)
    assert ours[3] < 1e-5 and ours.max() > 0.01


def test_rmsd_is_invariant_to_rigid_motion(adk):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # a proper rotation
    moved = adk.xyz @ q.T.astype(np.float32) + np.float32([1.0, -2.0, 0.5])
    np.testing.assert_allclose(geometry.rmsd(moved, adk.xyz[0]), geometry.rmsd(adk, adk.xyz[0]), atol=NM_TOL)
    mirrored = adk.xyz * np.float32([-1, 1, 1])
    assert geometry.rmsd(mirrored[:1], adk.xyz[0])[0] > 0.1  # a reflection is not a rotation


def test_superpose(adk):
    aligned, rmsd = geometry.superpose(adk, adk.xyz[0])
    assert aligned.shape == adk.xyz.shape
    direct = np.sqrt(((aligned - adk.xyz[0]) ** 2).sum(-1).mean(axis=(1, 2)))
    np.testing.assert_allclose(direct, rmsd, atol=NM_TOL)
    ref_aligned, ref_rmsd = numpy_ref.superpose(adk.xyz.reshape(adk.n_frames, -1, 3), adk.xyz[0].reshape(-1, 3))
    np.testing.assert_allclose(aligned.reshape(ref_aligned.shape), ref_aligned, atol=NM_TOL)


def test_pairwise_rmsd(backbone):
    pairs = geometry.pairwise_rmsd(backbone)
    points = backbone.xyz.reshape(backbone.n_frames, -1, 3)
    np.testing.assert_allclose(pairs, numpy_ref.pairwise_rmsd(points), atol=NM_TOL)
    traj = backbone.to_mdtraj()
    for i in range(backbone.n_frames):
        np.testing.assert_allclose(pairs[i], md.rmsd(traj, traj, i), atol=NM_TOL)
    np.testing.assert_array_equal(pairs, pairs.T)


def test_thread_count_does_not_change_results(adk):
    try:
        geometry.set_num_threads(1)
        one = geometry.pairwise_rmsd(adk)
        geometry.set_num_threads(3)
        three = geometry.pairwise_rmsd(adk)
    finally:
        geometry.set_num_threads(0)  # back to all cores
    np.testing.assert_array_equal(one, three)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(MdllmError, match=r"\(frames, residues, 4, 3\)"):
        geometry.dihedrals(np.zeros((2, 5, 3, 3)))
    with pytest.raises(MdllmError, match="reference has 3 atoms, frames have 8"):
        geometry.rmsd(np.zeros((1, 8, 3)), np.zeros((3, 3)))
    with pytest.raises(MdllmError, match="share a shape"):
        geometry.nerf(np.zeros((1, 3, 4)), np.zeros((1, 3, 4)), np.zeros((1, 2, 4)))


def test_bindings_refuse_wrong_output_arrays():
    from mdllm import _core

    xyz = np.zeros((1, 3, 4, 3), np.float32)
    good = np.empty((1, 3), np.float32)
    with pytest.raises(TypeError, match="writeable C-contiguous"):
        _core.dihedrals(xyz, 1, 3, np.empty((1, 3), np.float64), good, good)
    with pytest.raises(ValueError, match="expected 3 elements"):
        _core.dihedrals(xyz, 1, 3, np.empty((1, 2), np.float32), good, good)
    with pytest.raises(ValueError, match="xyz: expected 48 elements"):
        _core.dihedrals(xyz, 1, 4, good, good, good)
