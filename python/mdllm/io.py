"""Trajectory input and output on mdtraj: any format mdtraj reads, as a backbone of N, CA, C, O."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError, in_file
from mdllm.files import atomic_output

BACKBONE_ATOMS = ("N", "CA", "C", "O")
# Names under which force fields and formats write the carbonyl oxygen of a C-terminal residue.
OXYGEN_ALIASES = ("O", "OT1", "OC1", "O1")
# Terminal caps count as protein to mdtraj but carry no full backbone; they are skipped.
CAP_RESIDUES = {"ACE", "NME", "NMA", "NH2", "FOR"}
# One-letter codes for residue names mdtraj does not map (protonation states, force-field variants).
EXTRA_CODES = {
    "HID": "H",
    "HIE": "H",
    "HIP": "H",
    "HSD": "H",
    "HSE": "H",
    "HSP": "H",
    "HISA": "H",
    "HISB": "H",
    "HISH": "H",
    "HISD": "H",
    "HISE": "H",
    "CYX": "C",
    "CYM": "C",
    "CYS2": "C",
    "ASH": "D",
    "GLH": "E",
    "LYN": "K",
    "ARN": "R",
    "MSE": "M",
    "NLE": "L",
}
THREE_LETTER = {
    "A": "ALA",
    "R": "ARG",
    "N": "ASN",
    "D": "ASP",
    "C": "CYS",
    "Q": "GLN",
    "E": "GLU",
    "G": "GLY",
    "H": "HIS",
    "I": "ILE",
    "L": "LEU",
    "K": "LYS",
    "M": "MET",
    "F": "PHE",
    "P": "PRO",
    "S": "SER",
    "T": "THR",
    "W": "TRP",
    "Y": "TYR",
    "V": "VAL",
    "X": "UNK",
}
MAX_PEPTIDE_BOND_NM = 0.2  # a C(i)-N(i+1) distance beyond this is a chain break
WRITABLE_SUFFIXES = (".pdb", ".dcd", ".xtc", ".h5")
# Ideal carbonyl geometry used to rebuild a missing O (Engh & Huber): C=O 1.231 A, CA-C-O 120.5 deg.
CO_BOND_NM = 0.1231
CA_C_O_RAD = np.deg2rad(120.5)


@dataclass
class Backbone:
    """Backbone coordinates of a trajectory with the identity of every residue.

    xyz: (F, L, 4, 3) float32, nanometres, atoms N, CA, C, O.
    sequence: one-letter codes, length L ('X' for non-standard residues).
    residue_ids, chain_ids: per residue, as in the source file.
    time: (F,) picoseconds.
    """

    xyz: np.ndarray
    sequence: str
    residue_ids: np.ndarray
    chain_ids: np.ndarray
    time: np.ndarray
    source: str | None = field(default=None, compare=False)

    def __post_init__(self):
        self.xyz = np.ascontiguousarray(self.xyz, dtype=np.float32)
        if self.xyz.ndim != 4 or self.xyz.shape[2:] != (4, 3):
            raise MdllmError(f"backbone coordinates must have shape (frames, residues, 4, 3), got {self.xyz.shape}")
        n_res = self.xyz.shape[1]
        self.residue_ids = np.asarray(self.residue_ids, dtype=np.int64)
        self.chain_ids = np.asarray(self.chain_ids, dtype=str)
        self.time = np.asarray(self.time, dtype=np.float64)
        if len(self.sequence) != n_res or len(self.residue_ids) != n_res or len(self.chain_ids) != n_res:
            raise MdllmError(f"sequence, residue ids and chain ids must all have {n_res} entries")
        if len(self.time) != self.xyz.shape[0]:
            raise MdllmError(f"time must have {self.xyz.shape[0]} entries, got {len(self.time)}")

    @classmethod
    def from_xyz(cls, xyz, sequence: str | None = None, chain_id: str = "A", timestep_ps: float = 1.0):
        """A single-chain backbone from bare coordinates (e.g. decoded or generated frames)."""
        xyz = np.asarray(xyz, dtype=np.float32)
        if xyz.ndim == 3:
            xyz = xyz[None]
        n_frames, n_res = xyz.shape[:2]
        return cls(
            xyz,
            sequence or "X" * n_res,
            np.arange(1, n_res + 1),
            np.full(n_res, chain_id),
            np.arange(n_frames) * timestep_ps,
        )

    @property
    def n_frames(self) -> int:
        return self.xyz.shape[0]

    @property
    def n_residues(self) -> int:
        return self.xyz.shape[1]

    @property
    def chains(self) -> list[str]:
        """Chain ids in order of first appearance."""
        return list(dict.fromkeys(self.chain_ids.tolist()))

    @property
    def chain_ends(self) -> np.ndarray:
        """(L,) bool: True where residue i is the last of its chain (no peptide bond to i+1)."""
        ends = np.ones(self.n_residues, dtype=bool)
        ends[:-1] = self.chain_ids[:-1] != self.chain_ids[1:]
        return ends

    @property
    def timestep(self) -> float | None:
        """Picoseconds between frames, or None for a single frame."""
        return float(self.time[1] - self.time[0]) if self.n_frames > 1 else None

    def __getitem__(self, frames) -> "Backbone":
        index = np.arange(self.n_frames)[frames]
        index = np.atleast_1d(index)
        return Backbone(self.xyz[index], self.sequence, self.residue_ids, self.chain_ids, self.time[index], self.source)

    def __len__(self) -> int:
        return self.n_frames

    def topology(self):
        """An mdtraj topology of the backbone atoms (N, CA, C, O per residue)."""
        import mdtraj as md

        top = md.Topology()
        chains = {}
        for code, resid, chain_id in zip(self.sequence, self.residue_ids, self.chain_ids):
            if chain_id not in chains:
                chains[chain_id] = top.add_chain(chain_id=chain_id)
            residue = top.add_residue(THREE_LETTER.get(code, "UNK"), chains[chain_id], resSeq=int(resid))
            for name in BACKBONE_ATOMS:
                top.add_atom(name, md.element.get_by_symbol(name[0]), residue)
        for chain in top.chains:
            atoms = list(chain.atoms)
            for i in range(0, len(atoms), 4):
                top.add_bond(atoms[i], atoms[i + 1])
                top.add_bond(atoms[i + 1], atoms[i + 2])
                top.add_bond(atoms[i + 2], atoms[i + 3])
                if i + 4 < len(atoms):
                    top.add_bond(atoms[i + 2], atoms[i + 4])
        return top

    def to_mdtraj(self):
        import mdtraj as md

        return md.Trajectory(self.xyz.reshape(self.n_frames, -1, 3), self.topology(), time=self.time)


def load_backbone(path, top=None, stride: int = 1, chain: str | int | None = None, check: bool = True) -> Backbone:
    """Read the protein backbone of any file mdtraj reads.

    ``top`` is the topology file for formats without one (DCD, XTC, TRR, NetCDF, ...); ``chain``
    selects one chain by its id ('A') or index (0). Missing carbonyl oxygens are rebuilt from ideal
    geometry. A chain gap already present in the first frame (missing residues, a missing loop) splits
    the chain there: the residues after it get the chain id with a suffix ('A' -> 'A/2'), with a
    warning. Missing N, CA or C, a gap that opens later in the trajectory and NaN coordinates raise
    :class:`MdllmError` (``check=False`` keeps such frames, for tools that judge frames, e.g. evaluate).
    """
    traj = _load_mdtraj(path, top, stride)
    residues = _protein_residues(path, traj.topology, chain)
    xyz = _backbone_xyz(path, traj, residues)
    chain_ids = np.array([_chain_label(r.chain) for r in residues])
    if traj.unitcell_vectors is not None:
        _make_chains_whole(xyz, traj.unitcell_vectors, chain_ids)
    backbone = Backbone(
        xyz=xyz,
        sequence="".join(_one_letter(r) for r in residues),
        residue_ids=np.array([r.resSeq for r in residues]),
        chain_ids=chain_ids,
        time=np.asarray(traj.time, dtype=np.float64),
        source=str(path),
    )
    if check:
        _check_finite(path, backbone)
        _split_at_gaps(path, backbone, residues)
        _check_gaps(path, backbone, residues)
    return backbone


def save(obj, path, topology_pdb: bool = True) -> list[Path]:
    """Write a :class:`Backbone` or an mdtraj trajectory to .pdb, .dcd, .xtc or .h5, atomically.

    For .dcd and .xtc a topology PDB of the first frame is written beside it (same stem) unless
    ``topology_pdb`` is False. Returns the paths written.
    """
    path = Path(path)
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise in_file(path, f"cannot write '{path.suffix}' files; use one of {', '.join(WRITABLE_SUFFIXES)}")
    traj = obj.to_mdtraj() if isinstance(obj, Backbone) else obj
    written = [path]
    with atomic_output(path) as tmp:
        traj.save(str(tmp))
    if topology_pdb and path.suffix.lower() in (".dcd", ".xtc"):
        top_path = path.with_suffix(".pdb")
        with atomic_output(top_path) as tmp:
            traj[0].save_pdb(str(tmp))
        written.append(top_path)
    return written


# --- loading helpers -------------------------------------------------------------------------


def _load_mdtraj(path, top, stride):
    import mdtraj as md

    if not os.path.exists(path):
        raise in_file(path, "no such file")
    if top is not None and not os.path.exists(top):
        raise in_file(top, "no such topology file")
    kwargs = {"stride": stride} if stride != 1 else {}
    try:
        topology = md.load_topology(top) if top is not None else None
    except Exception as exc:  # mdtraj raises many types for unreadable files
        raise in_file(top, f"cannot read topology: {_first_line(exc)}") from None
    try:
        with _quiet_c_output():  # molfile plugins (DCD) print to the process's stdout from C
            traj = md.load(str(path), top=topology, **kwargs) if topology is not None else md.load(str(path), **kwargs)
        _check_dcd_length(path, traj.n_frames, stride)
        return traj
    except Exception as exc:
        message = _first_line(exc)
        if topology is not None and ("same atoms" in message or "xyz must be shape" in message):
            raise in_file(path, f"does not match topology {top} ({topology.n_atoms} atoms): {message}") from None
        if topology is None and "top" in message.lower():
            raise in_file(path, "this format has no topology; pass one with top= (--top on the command line)") from None
        raise in_file(path, f"cannot read as a trajectory: {message}") from None


class _quiet_c_output:
    """Send what C code writes to file descriptors 1 and 2 to /dev/null for the duration."""

    def __enter__(self):
        import sys

        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self._saved = [os.dup(1), os.dup(2)]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        return self

    def __exit__(self, *exc):
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        return False


def _check_dcd_length(path, n_frames: int, stride: int) -> None:
    """Warn when a DCD's header promises more frames than the file holds (a truncated file)."""
    import struct
    import warnings

    if not str(path).lower().endswith(".dcd"):
        return
    with open(path, "rb") as fh:
        head = fh.read(12)
    for order in ("<", ">"):
        if len(head) == 12 and struct.unpack(order + "i", head[:4])[0] == 84 and head[4:8] == b"CORD":
            promised = struct.unpack(order + "i", head[8:12])[0]
            expected = -(-promised // stride)
            if promised > 0 and n_frames < expected:
                warnings.warn(
                    f"{path}: DCD header promises {promised} frames but the file holds {n_frames * stride}"
                    f"{'' if stride == 1 else ' or fewer'} (truncated?); reading the {n_frames} there are",
                    stacklevel=4,
                )
            return


def _protein_residues(path, topology, chain):
    chains = list(topology.chains)
    if chain is not None:
        if isinstance(chain, int) or (
            isinstance(chain, str) and chain.isdigit() and not any(_chain_label(c) == chain for c in chains)
        ):
            index = int(chain)
            if not 0 <= index < len(chains):
                raise in_file(path, f"chain index {index} out of range (file has {len(chains)} chains)")
            chains = [chains[index]]
        else:
            selected = [c for c in chains if _chain_label(c) == chain]
            if not selected:
                labels = ", ".join(dict.fromkeys(_chain_label(c) for c in chains))
                raise in_file(path, f"no chain '{chain}' (chains: {labels})")
            chains = selected
    residues = [r for c in chains for r in c.residues if r.is_protein and r.name not in CAP_RESIDUES]
    if not residues:
        what = f"chain {chain}" if chain is not None else "the file"
        raise in_file(path, f"{what} has no protein residues (the selection is non-protein)")
    return residues


def _backbone_xyz(path, traj, residues):
    index = np.full((len(residues), 4), -1, dtype=np.int64)
    for i, residue in enumerate(residues):
        names = {atom.name: atom.index for atom in residue.atoms}
        for j, name in enumerate(BACKBONE_ATOMS[:3]):
            if name not in names:
                raise in_file(path, f"residue {_describe(residue)} has no {name} atom")
            index[i, j] = names[name]
        index[i, 3] = next((names[n] for n in OXYGEN_ALIASES if n in names), -1)
    xyz = np.empty((traj.n_frames, len(residues), 4, 3), dtype=np.float32)
    xyz[:, :, :3] = traj.xyz[:, index[:, :3]]
    missing_o = np.flatnonzero(index[:, 3] < 0)
    present_o = np.flatnonzero(index[:, 3] >= 0)
    xyz[:, present_o, 3] = traj.xyz[:, index[present_o, 3]]
    if missing_o.size:
        _rebuild_oxygens(xyz, missing_o)
    return xyz


def _rebuild_oxygens(xyz, residues):
    """Place O in the peptide plane, anti to N(i+1) (or to N(i) for a last residue)."""
    from mdllm.geometry.vectors import place

    n_res = xyz.shape[1]
    for i in residues:
        anchor = xyz[:, i + 1, 0] if i + 1 < n_res else xyz[:, i, 0]
        xyz[:, i, 3] = place(anchor, xyz[:, i, 1], xyz[:, i, 2], CO_BOND_NM, CA_C_O_RAD, np.pi)


def _make_chains_whole(xyz, box, chain_ids):
    """Undo periodic wrapping in place: walk each chain N -> CA -> C -> N(i+1) and move every atom to
    the minimum image of its predecessor (O follows its C)."""
    box = np.asarray(box, np.float64)  # (F, 3, 3), rows are the box vectors
    if not np.all(np.isfinite(box)) or np.any(np.abs(np.linalg.det(box)) < 1e-9):
        return
    inverse = np.linalg.inv(box)
    n_res = xyz.shape[1]

    def follow(prev, cur):
        d = cur.astype(np.float64) - prev
        frac = np.einsum("fi,fij->fj", d, inverse)
        d -= np.einsum("fi,fij->fj", np.round(frac), box)
        return (prev + d).astype(np.float32)

    for i in range(n_res):
        if i > 0 and chain_ids[i] == chain_ids[i - 1]:
            xyz[:, i, 0] = follow(xyz[:, i - 1, 2], xyz[:, i, 0])
        xyz[:, i, 1] = follow(xyz[:, i, 0], xyz[:, i, 1])
        xyz[:, i, 2] = follow(xyz[:, i, 1], xyz[:, i, 2])
        xyz[:, i, 3] = follow(xyz[:, i, 2], xyz[:, i, 3])


def _check_finite(path, backbone):
    bad = ~np.isfinite(backbone.xyz).all(axis=(2, 3))
    if bad.any():
        frame, res = np.argwhere(bad)[0]
        raise in_file(
            path,
            f"frame {frame}, residue {backbone.sequence[res]}{backbone.residue_ids[res]} "
            f"(chain {backbone.chain_ids[res]}) has non-finite (NaN or inf) coordinates",
        )


def _split_at_gaps(path, backbone, residues):
    """Give the residues after each gap of the first frame a chain id of their own (in place)."""
    import warnings

    ends = backbone.chain_ends
    bonds = np.linalg.norm(backbone.xyz[0, 1:, 0] - backbone.xyz[0, :-1, 2], axis=-1)
    gaps = np.flatnonzero((bonds > MAX_PEPTIDE_BOND_NM) & ~ends[:-1])
    if not len(gaps):
        return
    chain_ids = backbone.chain_ids.astype(object)
    for n, i in enumerate(gaps):
        same = chain_ids[i + 1 :] == chain_ids[i + 1]
        run = np.flatnonzero(~same)
        stop = i + 1 + (run[0] if len(run) else len(same))
        chain_ids[i + 1 : stop] = f"{str(backbone.chain_ids[i]).split('/')[0]}/{n + 2}"
    backbone.chain_ids = np.asarray(chain_ids, dtype=str)
    described = ", ".join(f"{_describe(residues[i])}-{_describe(residues[i + 1])}" for i in gaps[:3])
    warnings.warn(
        f"{path}: {len(gaps)} chain gap(s) (C-N > {MAX_PEPTIDE_BOND_NM * 10:.1f} A in the first frame: "
        f"{described}{' ...' if len(gaps) > 3 else ''}); each part is treated as its own chain",
        stacklevel=3,
    )


def _check_gaps(path, backbone, residues):
    ends = backbone.chain_ends
    bonds = np.linalg.norm(backbone.xyz[:, 1:, 0] - backbone.xyz[:, :-1, 2], axis=-1)  # C(i)-N(i+1)
    bonds[:, ends[:-1]] = 0.0
    if (bonds > MAX_PEPTIDE_BOND_NM).any():
        frame, i = np.argwhere(bonds > MAX_PEPTIDE_BOND_NM)[0]
        raise in_file(
            path,
            f"chain gap between residues {_describe(residues[i])} and {_describe(residues[i + 1])}: "
            f"C-N distance {bonds[frame, i] * 10:.2f} A in frame {frame} (> {MAX_PEPTIDE_BOND_NM * 10:.1f} A); "
            "missing residues? select a chain or repair the structure",
        )


def _chain_label(chain) -> str:
    label = str(getattr(chain, "chain_id", None) or "").strip()
    return label or chr(ord("A") + chain.index % 26)


def _one_letter(residue) -> str:
    return residue.code or EXTRA_CODES.get(residue.name, "X")


def _describe(residue) -> str:
    return f"{residue.name}{residue.resSeq} (chain {_chain_label(residue.chain)})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
