"""All-atom rebuild of backbone frames and energy minimisation (extra ``physics``).

Side chains and hydrogens are added with PDBFixer onto the N, CA, C, O of the first frame and the
result is minimised; that minimised structure is the protein's template. Every later frame gets the
template's side chains and hydrogens carried over in each residue's N-CA-C frame (a starting guess
that its own minimisation relaxes), so PDBFixer, whose placement of missing atoms includes its own
minimisation and takes minutes for a 200-residue protein on CPU, runs once per protein, and the
OpenMM systems and contexts are made once and reused (a :class:`Rebuilder` can serve several calls
of :func:`rebuild_frames` for one protein, e.g. the generated and the reference frames). A carried-over
frame that minimises into threaded side chains (a bond stretched past TANGLED_BOND_RATIO) is rebuilt
with PDBFixer instead.

Minimisation: amber14 in vacuum with a 1 nm cutoff, flexible bonds and the backbone held near the
input by a spring; the energies reported are amber14 + GBn2 implicit solvent (no cutoff) of the start
and of the minimised structure (with HBonds constraints applied). An optional GBn2 polish
(``solvent_iterations``) minimises further in implicit solvent; it is off by default because OpenMM's
CustomGBForce costs ~400x more per step on CPU than the vacuum force field (3-5 s per energy of
adenylate kinase on 2 cores: 20 iterations take 6 minutes a frame). Measured with and without it
(bench/results/rebuild-2026-12-06.txt): it lowers the energy by 1-3 % and left the verdicts of 6 villin
and 2 cobrotoxin frames as they were; of 2 AdK frames it turned one from not sane to sane, whose largest
N/CA/C move sat at the 2 Å limit (2.06 -> 1.97 Å). Without it, frames at that limit read not sane. For every frame the energy before and after, the backbone RMSD drift
that minimisation caused and a sanity verdict are reported; the minimised frames form one all-atom
trajectory (the hydrogen variants chosen for the first frame are reused so every frame shares one
topology).
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field

import numpy as np

from mdllm.errors import MdllmError

FORCE_FIELD = ("amber14-all.xml", "implicit/gbn2.xml")
VACUUM_FORCE_FIELD = ("amber14-all.xml",)
# A minimised frame is sane when its energy is finite and negative (a folded protein in amber14/GBn2
# has a large negative potential energy; clashes or broken bonds leave it positive), the backbone
# moved less than MAX_DRIFT_A (RMSD) and no N, CA or C atom more than MAX_DISPLACEMENT_A during
# minimisation (a repaired defect moves a few atoms far), and the minimised backbone passes
# check_backbone.
MAX_DRIFT_A = 1.0
MAX_DISPLACEMENT_A = 2.0
# The vacuum stage holds the backbone heavy atoms near the input with this spring (kJ/mol/nm^2), so
# that it relaxes side chains rather than collapsing the chain without solvent.
RESTRAINT_K = 1000.0
# L-BFGS iterations of the vacuum stage and of the optional implicit-solvent polish, and the RMS force
# (kJ/mol/nm) at which minimisation stops.
MAX_ITERATIONS = 1000
SOLVENT_ITERATIONS = 0
TOLERANCE_KJ_MOL_NM = 10.0
# A carried-over frame whose minimised structure has a bond longer than this times its force-field
# length is tangled (side chains threaded through each other) and is rebuilt with PDBFixer instead.
TANGLED_BOND_RATIO = 1.25


def default_threads() -> int:
    """CPU cores this process may use (OpenMM's CPU platform threads)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class RebuildResult:
    frames: list[int]  # indices of the input frames that were rebuilt
    energy_before: list[float] = field(default_factory=list)  # kJ/mol, after adding atoms, before minimising
    energy_after: list[float] = field(default_factory=list)
    drift_A: list[float] = field(default_factory=list)  # backbone (N, CA, C, O) RMSD, minimised vs input
    max_displacement_A: list[float] = field(default_factory=list)  # largest N/CA/C move, superposed
    sane: list[bool] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # '' or why the frame failed
    trajectory: object = None  # mdtraj.Trajectory of the minimised frames that succeeded
    frame_seconds: list[float] = field(default_factory=list)  # wall time of each frame (the template's in its first)
    refixed: int = 0  # carried-over frames that came out tangled and were rebuilt with PDBFixer
    minimisation: str = ""  # the protocol, in words

    def summary(self) -> dict:
        def stats(values):
            v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
            return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())} if v.size else None

        sane = int(sum(self.sane))
        return {
            "frames": len(self.frames),
            "sane_fraction": sane / len(self.sane) if self.sane else 0.0,
            "sane_frames": sane,
            "sane_fraction_ci95": list(wilson_interval(sane, len(self.sane))),
            "energy_before_kj_mol": stats(self.energy_before),
            "energy_after_kj_mol": stats(self.energy_after),
            "backbone_drift_A": stats(self.drift_A),
            "max_backbone_displacement_A": stats(self.max_displacement_A),
            "failed": int(sum(bool(e) for e in self.errors)),
            "rebuilt_with_pdbfixer_after_tangling": self.refixed,
            "seconds_per_frame": float(np.mean(self.frame_seconds)) if self.frame_seconds else None,
            "force_field": list(FORCE_FIELD),
            "minimisation": self.minimisation,
        }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95 % by default) of a binomial fraction; (0, 1) when n is 0. It stays
    inside [0, 1] and is not empty at 0 or n successes, as the normal approximation would be."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _backbone_pdb(xyz_nm: np.ndarray, sequence: str, chain_ids) -> str:
    """PDB text of one backbone frame (L, 4, 3) nm with standard residue names."""
    from mdllm.io import THREE_LETTER

    lines, serial = [], 1
    for i, (code, chain) in enumerate(zip(sequence, chain_ids)):
        for name, element, pos in zip(("N", "CA", "C", "O"), "NCCO", xyz_nm[i] * 10.0):
            lines.append(
                f"ATOM  {serial:5d}  {name:<3} {THREE_LETTER.get(code, 'UNK'):>3} {str(chain)[:1]:1}"
                f"{i + 1:4d}    {pos[0]:8.3f}{pos[1]:8.3f}{pos[2]:8.3f}  1.00  0.00          {element:>2}"
            )
            serial += 1
    lines.append("END")
    return "\n".join(lines) + "\n"


class Rebuilder:
    """Rebuild and minimise frames of one protein. Force fields and platform are set up at once; the
    side-chain template, the topology and the OpenMM contexts with the first frame, and all are
    reused for every later frame."""

    def __init__(
        self,
        sequence: str,
        chain_ids=None,
        threads: int | None = None,
        max_iterations: int = MAX_ITERATIONS,
        solvent_iterations: int = SOLVENT_ITERATIONS,
        tolerance_kj_mol_nm: float = TOLERANCE_KJ_MOL_NM,
        force_field=FORCE_FIELD,
        transfer_side_chains: bool = True,
        constrained_vacuum: bool = False,
    ):
        try:
            import openmm
            from openmm import app
        except ImportError:
            raise MdllmError("the all-atom rebuild needs OpenMM and PDBFixer: pip install 'mdllm[physics]'") from None
        if "X" in sequence:
            raise MdllmError("cannot rebuild residues of unknown type ('X' in the sequence)")
        self.sequence = sequence
        self.chain_ids = list(chain_ids) if chain_ids is not None else ["A"] * len(sequence)
        self.forcefield = app.ForceField(*force_field)
        self.vacuum_forcefield = app.ForceField(*VACUUM_FORCE_FIELD)
        self.platform = openmm.Platform.getPlatformByName("CPU")
        self.threads = max(1, int(threads or default_threads()))
        self.properties = {"Threads": str(self.threads)}
        self.max_iterations = max_iterations
        self.solvent_iterations = solvent_iterations
        self.tolerance = tolerance_kj_mol_nm
        # With HBonds constraints OpenMM's minimiser repeats its L-BFGS run with ever stiffer constraint
        # springs (3 rounds measured); the vacuum stage is flexible unless asked (the old protocol).
        self.constrained_vacuum = constrained_vacuum
        self.transfer_side_chains = transfer_side_chains
        self.variants = None
        self.topology = None
        self.contexts = None  # (vacuum, implicit solvent), made for the first frame's topology
        self.template = None  # (residue of each atom, its coordinates in that residue's frame)
        self._backbone = None
        self._bonds = None  # (i, j, length nm) of the implicit-solvent system's harmonic bonds
        self.refixed = 0  # carried-over frames that came out tangled and were rebuilt with PDBFixer

    @property
    def protocol(self) -> str:
        vacuum = (
            f"amber14 in vacuum (1 nm cutoff, {'HBonds constraints' if self.constrained_vacuum else 'flexible'}, "
            f"backbone restrained), up to {self.max_iterations} L-BFGS iterations to {self.tolerance:g} kJ/mol/nm"
        )
        solvent = (
            f", then up to {self.solvent_iterations} iterations in amber14 + GBn2"
            if self.solvent_iterations > 0
            else ""
        )
        template = (
            "side chains and hydrogens from PDBFixer on the first frame, carried over to later frames in residue frames"
            if self.transfer_side_chains
            else "side chains and hydrogens from PDBFixer on every frame"
        )
        return f"{template}; {vacuum}{solvent}; energies amber14 + GBn2 (no cutoff, HBonds constraints)"

    def _add_atoms(self, xyz_nm):
        from openmm import app
        from pdbfixer import PDBFixer

        from mdllm.seeds import seeded_python_random

        fixer = PDBFixer(pdbfile=io.StringIO(_backbone_pdb(xyz_nm, self.sequence, self.chain_ids)))
        fixer.missingResidues = {}
        fixer.findMissingAtoms()
        fixer.addMissingAtoms(seed=0)  # PDBFixer may run Langevin dynamics to resolve clashes; fix it
        modeller = app.Modeller(fixer.topology, fixer.positions)
        # Hydrogens start at random positions (seeded: same frame, same rebuild) and Modeller minimises
        # them with the force field it is given: the vacuum one has the same residue templates and
        # costs a fraction of GBn2's CustomGBForce (2.3 s -> 0.4 s for villin).
        with seeded_python_random(0):
            variants = modeller.addHydrogens(
                self.vacuum_forcefield, pH=7.0, variants=self.variants, platform=self.platform
            )
        if self.variants is None:
            self.variants = variants
        return modeller

    def _contexts(self, topology):
        """(vacuum, implicit solvent) contexts, made once for the first frame's topology."""
        import openmm
        from openmm import app

        if self.contexts is None:
            self.topology = topology
            # The vacuum stage only removes clashes: a 1 nm cutoff makes it several times cheaper.
            vacuum = self.vacuum_forcefield.createSystem(
                topology,
                nonbondedMethod=app.CutoffNonPeriodic,
                nonbondedCutoff=1.0,
                constraints=app.HBonds if self.constrained_vacuum else None,
            )
            self.restraint = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
            self.restraint.addGlobalParameter("k", RESTRAINT_K)
            for name in ("x0", "y0", "z0"):
                self.restraint.addPerParticleParameter(name)
            for index in self.backbone_indices().ravel():
                self.restraint.addParticle(int(index), [0.0, 0.0, 0.0])
            vacuum.addForce(self.restraint)
            solvent = self.forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
            self.contexts = tuple(
                openmm.Context(system, openmm.VerletIntegrator(0.001), self.platform, self.properties)
                for system in (vacuum, solvent)
            )
        return self.contexts

    def _restrain_to(self, xyz_nm):
        for k, (index, xyz) in enumerate(zip(self.backbone_indices().ravel(), np.reshape(xyz_nm, (-1, 3)))):
            self.restraint.setParticleParameters(k, int(index), [float(v) for v in xyz])
        self.restraint.updateParametersInContext(self.contexts[0])

    def minimise(self, xyz_nm: np.ndarray):
        """(positions nm (N, 3), energy before, energy after) for one backbone frame (L, 4, 3);
        energies in kJ/mol with the implicit-solvent force field."""
        if self.template is None or not self.transfer_side_chains:
            return self._relax(self._pdbfixer_start(xyz_nm), xyz_nm)
        positions, before, after = self._relax(self._transfer(xyz_nm), xyz_nm)
        if self._tangled(positions):
            # Side chains carried over rigidly can end threaded through each other (a ring pierced by
            # a bond; seen in cobrotoxin), which no minimiser undoes: this frame gets PDBFixer's own
            # placement, so that the verdict is about the frame, not about the carry-over.
            self.refixed += 1
            positions, before, after = self._relax(self._pdbfixer_start(xyz_nm, fill=self._transfer(xyz_nm)), xyz_nm)
        return positions, before, after

    def _pdbfixer_start(self, xyz_nm, fill=None):
        """All-atom start positions (N, 3) nm from PDBFixer and Modeller; makes the contexts the first
        time. Later, atoms are matched by residue and name to the first frame's topology, and any that
        PDBFixer did not make (e.g. a cysteine's HG when its sulfur now sits at bonding distance from
        another) are taken from ``fill``."""
        from openmm import unit

        modeller = self._add_atoms(xyz_nm)
        positions = np.asarray(modeller.positions.value_in_unit(unit.nanometer), np.float64)
        if self.topology is None:
            self._contexts(modeller.topology)
            return positions
        if fill is None and modeller.topology.getNumAtoms() != self.topology.getNumAtoms():
            raise MdllmError("rebuilt frame has a different atom count from the first frame")
        where = {(a.residue.index, a.name): a.index for a in modeller.topology.atoms()}
        start = np.array(fill, np.float64) if fill is not None else np.full((self.topology.getNumAtoms(), 3), np.nan)
        for atom in self.topology.atoms():
            k = where.get((atom.residue.index, atom.name))
            if k is not None:
                start[atom.index] = positions[k]
        if not np.isfinite(start).all():
            raise MdllmError("rebuilt frame has atoms the first frame does not")
        return start

    def _relax(self, start, xyz_nm):
        """Minimise all-atom start positions with the backbone restrained to ``xyz_nm``."""
        import openmm
        from openmm import unit

        vacuum, solvent = self._contexts(self.topology)
        solvent.setPositions(start)
        before = solvent.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        self._restrain_to(xyz_nm)
        vacuum.setPositions(start)
        openmm.LocalEnergyMinimizer.minimize(vacuum, self.tolerance, self.max_iterations)
        solvent.setPositions(vacuum.getState(getPositions=True).getPositions())
        if self.solvent_iterations > 0:
            openmm.LocalEnergyMinimizer.minimize(solvent, self.tolerance, self.solvent_iterations)
        else:
            solvent.applyConstraints(1e-5)  # hydrogen bond lengths as the reported energy assumes them
        state = solvent.getState(getEnergy=True, getPositions=True)
        after = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        positions = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), np.float32)
        if self.template is None:
            self._remember(positions)
        return positions, before, after

    def _tangled(self, positions) -> bool:
        """Whether a minimised structure has a covalent bond stretched past TANGLED_BOND_RATIO x its
        length (minimised bonds stay within a few per cent; threaded side chains hold them at 1.4-2x)."""
        import openmm
        from openmm import unit

        if self._bonds is None:
            force = next(f for f in self.contexts[1].getSystem().getForces() if isinstance(f, openmm.HarmonicBondForce))
            bonds = [force.getBondParameters(k) for k in range(force.getNumBonds())]
            self._bonds = (
                np.array([b[0] for b in bonds], np.int64),
                np.array([b[1] for b in bonds], np.int64),
                np.array([b[2].value_in_unit(unit.nanometer) for b in bonds], np.float64),
            )
        i, j, r0 = self._bonds
        r = np.linalg.norm(np.asarray(positions, np.float64)[i] - np.asarray(positions, np.float64)[j], axis=-1)
        return bool(np.any(r > TANGLED_BOND_RATIO * r0))

    def _residue_frames(self, backbone):
        """Rotations (L, 3, 3) and origins (L, 3) of the N-CA-C frames of a backbone (L, 4, 3)."""
        from mdllm.geometry import rigid_frames

        rot, trans = rigid_frames(np.asarray(backbone, np.float32)[None])
        return rot[0].astype(np.float64), trans[0].astype(np.float64)

    def _remember(self, positions):
        """Store every atom of a minimised frame in its residue's local frame."""
        residue_of = np.array([a.residue.index for a in self.topology.atoms()], np.int64)
        rot, trans = self._residue_frames(positions[self.backbone_indices()])
        local = np.einsum("nji,nj->ni", rot[residue_of], positions - trans[residue_of])  # R^T (p - t)
        self.template = (residue_of, local)

    def _transfer(self, xyz_nm):
        """All-atom start positions for a new backbone: template atoms placed in its residue frames,
        backbone atoms exactly as given."""
        residue_of, local = self.template
        rot, trans = self._residue_frames(xyz_nm)
        positions = np.einsum("nij,nj->ni", rot[residue_of], local) + trans[residue_of]
        positions[self.backbone_indices().ravel()] = np.asarray(xyz_nm, np.float64).reshape(-1, 3)
        return positions

    def backbone_indices(self) -> np.ndarray:
        """(L, 4) atom indices of N, CA, C, O in the rebuilt topology."""
        if self._backbone is None:
            index = []
            for residue in self.topology.residues():
                names = {a.name: a.index for a in residue.atoms()}
                index.append([names["N"], names["CA"], names["C"], names.get("O", names.get("OXT"))])
            self._backbone = np.array(index, np.int64)
        return self._backbone


def rebuild_frames(
    xyz,
    sequence: str,
    chain_ids=None,
    frames=None,
    threads: int | None = None,
    max_iterations: int = MAX_ITERATIONS,
    solvent_iterations: int = SOLVENT_ITERATIONS,
    progress: bool = True,
    label: str = "rebuild + minimise",
    transfer_side_chains: bool = True,
    rebuilder: Rebuilder | None = None,
) -> RebuildResult:
    """Rebuild and minimise the given frames (default all) of backbones (F, L, 4, 3) nm;
    ``max_iterations`` of the vacuum stage, ``solvent_iterations`` of the implicit-solvent polish,
    ``threads`` for OpenMM (default: every core this process may use). A ``rebuilder`` of the same
    protein from an earlier call is reused with its side-chain template and OpenMM contexts (its own
    settings then apply, not the ones given here)."""
    import mdtraj as md
    from tqdm.auto import tqdm

    from mdllm.evaluate.validity import check_backbone
    from mdllm.geometry import superpose

    xyz = np.asarray(getattr(xyz, "xyz", xyz), np.float32)
    frames = list(range(len(xyz))) if frames is None else [int(f) for f in frames]
    if rebuilder is None:
        rebuilder = Rebuilder(
            sequence,
            chain_ids,
            threads=threads,
            max_iterations=max_iterations,
            solvent_iterations=solvent_iterations,
            transfer_side_chains=transfer_side_chains,
        )
    elif rebuilder.sequence != sequence:
        raise MdllmError(
            f"cannot reuse a rebuilder of a {len(rebuilder.sequence)}-residue sequence for "
            f"another ({len(sequence)} residues)"
        )
    result = RebuildResult(frames, minimisation=rebuilder.protocol)
    refixed = rebuilder.refixed
    kept = []
    for f in tqdm(frames, desc=label, unit="frame", disable=not progress):
        start = time.perf_counter()
        try:
            if not np.isfinite(xyz[f]).all():
                raise MdllmError("non-finite coordinates")
            positions, before, after = rebuilder.minimise(xyz[f])
            bb = positions[rebuilder.backbone_indices()]
            moved, drift = superpose(bb.reshape(1, -1, 3), xyz[f].reshape(-1, 3))
            drift = float(drift[0] * 10.0)
            # N, CA, C only: a C-terminal carboxylate may swap O and OXT during minimisation.
            trace = (moved[0] - xyz[f].reshape(-1, 3)).reshape(-1, 4, 3)[:, :3]
            displacement = float(np.linalg.norm(trace, axis=-1).max() * 10.0)
            backbone_ok = bool(check_backbone(bb[None], sequence, chain_ids).valid[0])
            ok = bool(
                np.isfinite(after)
                and after < 0
                and drift < MAX_DRIFT_A
                and displacement < MAX_DISPLACEMENT_A
                and backbone_ok
            )
            result.energy_before.append(float(before)), result.energy_after.append(float(after))
            result.drift_A.append(drift), result.max_displacement_A.append(displacement)
            result.sane.append(ok), result.errors.append("")
            kept.append(positions)
        except Exception as exc:  # OpenMM and PDBFixer raise many types; record and continue
            result.energy_before.append(float("nan")), result.energy_after.append(float("nan"))
            result.drift_A.append(float("nan")), result.max_displacement_A.append(float("nan"))
            result.sane.append(False)
            result.errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        result.frame_seconds.append(time.perf_counter() - start)
    result.refixed = rebuilder.refixed - refixed
    if kept:
        result.trajectory = md.Trajectory(np.stack(kept), md.Topology.from_openmm(rebuilder.topology))
    return result
