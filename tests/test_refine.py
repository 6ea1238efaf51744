"""Restrained geometric refinement of decoded backbones (mdllm.geometry.refine) on real AdK frames."""

from pathlib import Path

import numpy as np
import pytest

from mdllm import MdllmError, load_backbone
from mdllm.evaluate import check_backbone
from mdllm.evaluate.validity import IDEAL_ANGLES_DEG, IDEAL_BONDS_NM
from mdllm.geometry import numpy_ref
from mdllm.geometry.refine import refine_backbones

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def adk():
    return load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf")


def rms_shift_A(a, b):
    return np.sqrt(((a - b) ** 2).sum(-1).mean(axis=(1, 2))) * 10


def test_valid_md_frames_barely_move(adk):
    xyz = adk.xyz[:3]
    refined = refine_backbones(xyz, adk.sequence)
    assert rms_shift_A(refined, xyz).max() < 0.15  # measured 0.107 A: MD geometry is not ideal
    assert check_backbone(refined, adk.sequence).valid.all()


def test_noisy_frames_get_ideal_geometry_and_stay_close(adk):
    xyz = adk.xyz[:3]
    noisy = xyz + np.random.default_rng(0).normal(0, 0.025, xyz.shape).astype(np.float32)  # 0.25 A per axis
    before = check_backbone(noisy, adk.sequence)
    assert before.n_breaks.min() > 0 and before.n_bond_outliers.min() > 50  # badly broken
    refined = refine_backbones(noisy, adk.sequence)
    after = check_backbone(refined, adk.sequence)
    assert after.n_breaks.max() == 0 and after.n_bond_outliers.max() == 0 and after.n_clashes.max() == 0
    assert before.rama_outlier_fraction.min() > 0.03 and after.rama_outlier_fraction.max() < 0.05
    assert rms_shift_A(refined, xyz).max() < rms_shift_A(noisy, xyz).min()  # closer to the truth than the input
    bonds, angles, _ = numpy_ref.internal_coordinates(refined)
    assert np.nanmax(np.abs(bonds - np.array(IDEAL_BONDS_NM))) < 0.01  # nm (0.1 A)
    assert np.nanmax(np.abs(np.rad2deg(angles) - np.array(IDEAL_ANGLES_DEG))) < 10.0  # degrees; the noisy input is off by tens


def test_dihedral_gradient_matches_finite_differences():
    from mdllm.geometry.refine import _dihedral_and_gradient

    p = np.random.default_rng(1).normal(size=(6, 4, 3))
    angle, grads = _dihedral_and_gradient(*(p[:, k] for k in range(4)))
    assert np.allclose(angle, numpy_ref.dihedral(*(p[:, k] for k in range(4))), atol=1e-8)
    for k in range(4):
        for c in range(3):
            q = p.copy()
            q[:, k, c] += 1e-6
            moved, _ = _dihedral_and_gradient(*(q[:, m] for m in range(4)))
            assert np.allclose((moved - angle) / 1e-6, grads[k][:, c], atol=1e-4)


def test_bad_input(adk):
    with pytest.raises(MdllmError, match="shape"):
        refine_backbones(adk.xyz[0])
    bad = adk.xyz[:1].copy()
    bad[0, 3, 1, 0] = np.nan
    with pytest.raises(MdllmError, match="NaN"):
        refine_backbones(bad)
    with pytest.raises(MdllmError, match="sequence"):
        refine_backbones(adk.xyz[:1], adk.sequence[:-1])
