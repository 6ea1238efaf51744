"""The linear surrogate (mdllm.lm.surrogate): it reproduces the statistics it was fitted to, keeps the
key's bonds, is reproducible, and says clearly what it cannot fit."""

import numpy as np
import pytest
from conftest import DATA

from mdllm.errors import MdllmError
from mdllm.io import load_backbone
from mdllm.lm.surrogate import LinearSurrogate
from mdllm.tokenizer.motion import superpose_on_key


@pytest.fixture(scope="module")
def ntl9():
    return load_backbone(DATA / "ntl9_md300_bb.xtc", top=DATA / "ntl9_md300_bb.pdb")


def _ar1_frames(key, n, rho, amplitude_nm, seed):
    """Key + one rigid-looking mode (every atom along one direction, growing along the chain) whose
    amplitude is an AR(1) process with lag-1 correlation ``rho``."""
    rng = np.random.default_rng(seed)
    mode = np.zeros(key.shape)
    mode[..., 0] = np.linspace(-1.0, 1.0, key.shape[0])[:, None]
    mode /= np.linalg.norm(mode)
    a = np.empty(n)
    a[0] = rng.standard_normal()
    for t in range(1, n):
        a[t] = rho * a[t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal()
    return key[None] + amplitude_nm * a[:, None, None, None] * mode[None] * np.sqrt(key.size)


def test_fit_recovers_a_known_process(ntl9):
    key = ntl9.xyz[0].astype(np.float64)
    frames = _ar1_frames(key, 4000, rho=0.8, amplitude_nm=0.02, seed=1)
    s = LinearSurrogate.fit([frames], key)
    # superposition on the key takes the mode's rigid part away; what stays is one component
    assert s.scale[0] > 10 * (s.scale[1] if len(s.scale) > 1 else 0.0)
    assert abs(s.autocorrelation[0] - 0.8) < 0.05


def test_samples_match_the_fitted_trajectory(ntl9):
    key = ntl9.xyz[0]
    s = LinearSurrogate.fit([ntl9.xyz], key)
    out = s.sample(3000, seed=0)
    assert out.shape == (3000, *key.shape) and out.dtype == np.float32
    md = superpose_on_key(ntl9.xyz, key)[:, :, 1]
    gen = superpose_on_key(out, key)[:, :, 1]
    # the per-residue mean and spread of the CA atoms follow the MD (projection moves atoms a little)
    assert np.abs(gen.mean(0) - md.mean(0)).max() < 0.03  # nm
    spread_md = np.sqrt(((md - md.mean(0)) ** 2).sum(-1).mean(0))
    spread_gen = np.sqrt(((gen - gen.mean(0)) ** 2).sum(-1).mean(0))
    assert np.corrcoef(spread_md, spread_gen)[0, 1] > 0.9
    assert 0.7 < spread_gen.mean() / spread_md.mean() < 1.3


def test_samples_keep_the_keys_bonds(ntl9):
    key = ntl9.xyz[0]
    out = LinearSurrogate.fit([ntl9.xyz], key).sample(50, seed=0)
    ca_c_key = np.linalg.norm(key[:, 2] - key[:, 1], axis=-1)
    ca_c = np.linalg.norm(out[:, :, 2] - out[:, :, 1], axis=-1)
    peptide_key = np.linalg.norm(key[1:, 0] - key[:-1, 2], axis=-1)
    peptide = np.linalg.norm(out[:, 1:, 0] - out[:, :-1, 2], axis=-1)
    assert np.abs(ca_c - ca_c_key).max() < 0.005
    assert np.abs(peptide - peptide_key).max() < 0.01


def test_same_seed_same_frames_and_several_trajectories(ntl9):
    key = ntl9.xyz[0]
    s = LinearSurrogate.fit([ntl9.xyz[:6], ntl9.xyz[6:]], key)
    np.testing.assert_array_equal(s.sample(10, seed=3), s.sample(10, seed=3))
    assert not np.array_equal(s.sample(10, seed=3), s.sample(10, seed=4))
    assert np.all((s.autocorrelation >= 0) & (s.autocorrelation <= 0.99))


def test_clear_errors(ntl9):
    key = ntl9.xyz[0]
    with pytest.raises(MdllmError, match="at least 3 frames"):
        LinearSurrogate.fit([ntl9.xyz[:2]], key)
    with pytest.raises(MdllmError, match="differ in size"):
        LinearSurrogate.fit([ntl9.xyz[:, :-1]], key)
    with pytest.raises(MdllmError, match="n_frames"):
        LinearSurrogate.fit([ntl9.xyz], key).sample(0)


def test_elastic_network_has_the_asked_amplitude_and_keeps_the_fold(ntl9):
    key = ntl9.xyz[0].astype(np.float64)
    s = LinearSurrogate.elastic_network(key, rmsf_A=0.8, slowest_autocorrelation=0.9)
    assert len(s.scale) == key.size - 6  # every internal mode, the six rigid-body ones dropped
    assert abs(s.autocorrelation[0] - 0.9) < 1e-12 and np.all(np.diff(s.autocorrelation) <= 1e-12)
    frames = s.sample(3000, seed=3)
    z = superpose_on_key(frames, key)
    rmsf = np.sqrt(((z[:, :, 1] - z[:, :, 1].mean(0)) ** 2).sum(-1).mean(0)).mean() * 10
    assert 0.6 < rmsf < 1.0  # 0.8 asked; superposition and bond projection take a little away
    lag1 = np.linalg.norm(np.diff(z[:, :, 1], axis=0), axis=-1).mean()
    far = np.linalg.norm(z[500:, :, 1] - z[:-500, :, 1], axis=-1).mean()
    assert lag1 < 0.8 * far  # consecutive frames are closer than distant ones
    bonds = np.linalg.norm(frames[:, :, 1] - frames[:, :, 0], axis=-1)
    error = np.abs(bonds - np.linalg.norm(key[:, 1] - key[:, 0], axis=-1))
    assert np.percentile(error, 99) < 0.005 and error.max() < 0.02  # nm: the projection restores the bonds


def test_elastic_network_reports_bad_input(ntl9):
    with pytest.raises(MdllmError, match="shape"):
        LinearSurrogate.elastic_network(ntl9.xyz[0, :, 1])
    with pytest.raises(MdllmError, match="slowest_autocorrelation"):
        LinearSurrogate.elastic_network(ntl9.xyz[0], slowest_autocorrelation=1.0)
