"""Trajectory input/output: every format in the shared data, checked against mdtraj, and bad input."""

import os

import mdtraj as md
import numpy as np
import pytest

from conftest import ADK, DATA
from mdllm import Backbone, MdllmError, load_backbone, save

# (file, topology, expected frames, expected residues, expected sequence start)
FORMATS = [
    ("5AWL.pdb", None, 1, 10, "YYDPETGTWY"),
    ("1L2Y_3models.pdb", None, 3, 20, "NLYIQWLKDG"),
    ("1L2Y_3models.cif", None, 3, 20, "NLYIQWLKDG"),
    ("adk_dims_10.dcd", "adk.psf", 10, 214, "MRIILLGAPG"),
    ("adk_oplsaa_protein.xtc", "adk_oplsaa_protein.gro", 10, 214, "MRIILLGAPG"),
    ("tz2.truncoct.nc", "tz2.truncoct.parm7", 10, 12, "SWTWENGKWT"),
    ("traj.trr", "conf.gro", 4, 1, "A"),
]


def _mdtraj_backbone(path, top):
    traj = md.load(str(path), top=str(top) if top else None)
    residues = [r for r in traj.topology.residues if r.is_protein and r.name not in ("ACE", "NME")]
    index = np.array(
        [[next(a.index for a in r.atoms if a.name == name) for name in ("N", "CA", "C")] for r in residues]
    )
    return traj, residues, traj.xyz[:, index]  # (F, L, 3, 3)


@pytest.mark.parametrize("name, top, frames, residues, seq", FORMATS)
def test_reads_every_format_like_mdtraj(name, top, frames, residues, seq):
    top_path = DATA / top if top else None
    bb = load_backbone(DATA / name, top=top_path)
    assert bb.xyz.shape == (frames, residues, 4, 3)
    assert bb.xyz.dtype == np.float32
    assert bb.sequence.startswith(seq)
    traj, res, ref = _mdtraj_backbone(DATA / name, top_path)
    assert bb.sequence == "".join(r.code for r in res)
    assert list(bb.residue_ids) == [r.resSeq for r in res]
    np.testing.assert_allclose(bb.time, traj.time)
    if traj.unitcell_vectors is None:
        np.testing.assert_allclose(bb.xyz[:, :, :3], ref, atol=1e-6)
    # Periodic files are made whole, so compare internal distances instead of raw positions.
    ca_ca = np.linalg.norm(np.diff(bb.xyz[:, :, 1], axis=1), axis=-1)
    assert np.all(ca_ca < 0.42)


def test_periodic_wrapping_is_undone():
    wrapped = md.load(str(DATA / "adk_oplsaa_protein.xtc"), top=str(DATA / "adk_oplsaa_protein.gro"))
    ca = wrapped.topology.select("name CA")
    assert np.linalg.norm(np.diff(wrapped.xyz[:, ca], axis=1), axis=-1).max() > 1.0  # really wrapped
    bb = load_backbone(DATA / "adk_oplsaa_protein.xtc", top=DATA / "adk_oplsaa_protein.gro")
    c_n = np.linalg.norm(bb.xyz[:, 1:, 0] - bb.xyz[:, :-1, 2], axis=-1)
    assert c_n.max() < 0.15


def test_chain_selection_and_multichain():
    both = load_backbone(ADK / "adk_open.pdb")
    assert both.chains == ["A"]
    bb = load_backbone(DATA / "5AWL.pdb", chain="A")
    assert bb.n_residues == 10
    assert load_backbone(DATA / "5AWL.pdb", chain=0).n_residues == 10
    with pytest.raises(MdllmError, match="no chain 'Z'"):
        load_backbone(DATA / "5AWL.pdb", chain="Z")


def test_stride():
    bb = load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf", stride=3)
    assert bb.n_frames == 4


def test_missing_oxygen_is_rebuilt(tmp_path):
    traj = md.load(str(DATA / "5AWL.pdb"))
    keep = [a.index for a in traj.topology.atoms if not (a.name == "O" and a.residue.index == 4)]
    path = tmp_path / "no_o.pdb"
    traj.atom_slice(keep).save_pdb(str(path))
    original = load_backbone(DATA / "5AWL.pdb")
    rebuilt = load_backbone(path)
    error = np.linalg.norm(rebuilt.xyz[0, 4, 3] - original.xyz[0, 4, 3])
    assert error < 0.03  # ideal carbonyl vs crystal: well under 0.3 A
    np.testing.assert_allclose(rebuilt.xyz[0, 4, 3] - rebuilt.xyz[0, 4, 2], 0, atol=0.13)


def _write_without(tmp_path, atom_filter, name="bad.pdb"):
    traj = md.load(str(DATA / "5AWL.pdb"))
    keep = [a.index for a in traj.topology.atoms if atom_filter(a)]
    path = tmp_path / name
    traj.atom_slice(keep).save_pdb(str(path))
    return path


def test_error_missing_backbone_atom(tmp_path):
    path = _write_without(tmp_path, lambda a: not (a.name == "CA" and a.residue.index == 3))
    with pytest.raises(MdllmError, match=r"bad.pdb: residue PRO4 \(chain A\) has no CA atom"):
        load_backbone(path)


def test_chain_gap_splits_the_chain(tmp_path):
    path = _write_without(tmp_path, lambda a: a.residue.index != 5)
    with pytest.warns(UserWarning, match=r"bad.pdb: 1 chain gap\(s\).*GLU5 \(chain A\)-GLY7 \(chain A\)"):
        bb = load_backbone(path)
    assert bb.n_residues == 9 and bb.chains == ["A", "A/2"]
    assert bb.chain_ends.tolist() == [False] * 4 + [True] + [False] * 3 + [True]


def test_error_gap_opening_later(tmp_path):
    traj = md.load(str(DATA / "adk_dims_10.dcd"), top=str(DATA / "adk.psf"))
    atoms = traj.topology.select("resid 51 to 213")
    traj.xyz[3, atoms] += 1.0  # frame 3 tears the chain apart between residues 51 and 52
    path = tmp_path / "torn.dcd"
    traj.save_dcd(str(path))
    with pytest.raises(MdllmError, match=r"torn.dcd: chain gap between residues .* in frame 3"):
        load_backbone(path, top=DATA / "adk.psf")


def test_error_nan_coordinates(tmp_path):
    traj = md.load(str(DATA / "adk_dims_10.dcd"), top=str(DATA / "adk.psf"))
    traj.xyz[2, 100] = np.nan
    path = tmp_path / "nan.dcd"
    traj.save_dcd(str(path))
    with pytest.raises(MdllmError, match=r"nan.dcd: frame 2, residue .* non-finite"):
        load_backbone(path, top=DATA / "adk.psf")


def test_error_non_protein_selection(tmp_path):
    path = _write_without(tmp_path, lambda a: a.residue.name == "HOH", name="water.pdb")
    with pytest.raises(MdllmError, match="water.pdb: the file has no protein residues"):
        load_backbone(path)


def test_error_topology_mismatch():
    with pytest.raises(MdllmError, match=r"adk_dims_10.dcd: does not match topology .*5AWL.pdb"):
        load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "5AWL.pdb")


def test_error_missing_topology():
    with pytest.raises(MdllmError, match="adk_dims_10.dcd: this format has no topology"):
        load_backbone(DATA / "adk_dims_10.dcd")


def test_error_unreadable_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.xtc"
    garbage.write_bytes(os.urandom(300))
    with pytest.raises(MdllmError, match="garbage.xtc: cannot read"):
        load_backbone(garbage, top=DATA / "5AWL.pdb")
    with pytest.raises(MdllmError, match="nothing.pdb: no such file"):
        load_backbone(tmp_path / "nothing.pdb")


@pytest.mark.parametrize("suffix", [".pdb", ".dcd", ".xtc", ".h5"])
def test_save_round_trip(tmp_path, suffix):
    bb = load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf")
    out = tmp_path / f"out{suffix}"
    written = save(bb, out)
    assert written[0] == out
    top = out.with_suffix(".pdb") if suffix in (".dcd", ".xtc") else None
    if top:
        assert top in written and top.exists()
    back = load_backbone(out, top=top)
    assert back.sequence == bb.sequence
    tolerance = 2e-3 if suffix in (".pdb", ".xtc") else 1e-6  # PDB and XTC store 0.001 nm
    np.testing.assert_allclose(back.xyz, bb.xyz, atol=tolerance)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temp files left


def test_save_rejects_unknown_format_without_writing(tmp_path):
    bb = load_backbone(DATA / "5AWL.pdb")
    with pytest.raises(MdllmError, match="cannot write '.mol2'"):
        save(bb, tmp_path / "x.mol2")
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_on_failure(tmp_path):
    bb = load_backbone(DATA / "5AWL.pdb")
    out = tmp_path / "keep.pdb"
    out.write_text("old content")

    class Broken:
        def save(self, path):
            with open(path, "w") as f:
                f.write("half a file")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save(Broken(), out)
    assert out.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pdb"]
    save(bb, out)
    assert load_backbone(out).n_residues == 10


def test_backbone_object():
    bb = load_backbone(DATA / "adk_dims_10.dcd", top=DATA / "adk.psf")
    sub = bb[2:5]
    assert sub.n_frames == 3 and np.array_equal(sub.xyz, bb.xyz[2:5])
    assert bb.timestep == pytest.approx(1.0)
    assert bb.chain_ends.sum() == 1 and bb.chain_ends[-1]
    with pytest.raises(MdllmError, match="shape"):
        Backbone(np.zeros((2, 5, 3, 3)), "AAAAA", np.arange(5), ["A"] * 5, [0, 1])
    from_xyz = Backbone.from_xyz(bb.xyz[0])
    assert from_xyz.n_frames == 1 and from_xyz.sequence == "X" * 214


def test_written_files_follow_the_umask(tmp_path):
    """Some writers (safetensors) create files 0600; shipped outputs must follow the umask instead."""
    from mdllm.files import atomic_output

    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "weights.bin") as tmp:
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
            os.write(fd, b"data")
            os.close(fd)
    finally:
        os.umask(old)
    assert (tmp_path / "weights.bin").stat().st_mode & 0o777 == 0o644


def test_truncated_dcd_warns_in_one_line(tmp_path, capfd):
    cut = tmp_path / "cut.dcd"
    cut.write_bytes((DATA / "adk_dims_10.dcd").read_bytes()[:100_000])
    with pytest.warns(UserWarning, match=r"cut.dcd: DCD header promises 10 frames but the file holds 2"):
        bb = load_backbone(cut, top=DATA / "adk.psf")
    assert bb.n_frames == 2
    assert "dcdplugin" not in capfd.readouterr().out  # the C plugin's chatter stays out of the terminal
