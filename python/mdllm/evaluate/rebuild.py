"""All-atom rebuild of backbone frames and energy minimisation (extra ``physics``).

Side chains and hydrogens are added with PDBFixer onto the N, CA, C, O of each frame, then the
structure is minimised in OpenMM in two stages: first with amber14 in vacuum (cheap; it resolves
the clashes of freshly placed side chains), then with amber14 + GBn2 implicit solvent (OpenMM's
CustomGBForce costs ~50x more per step on CPU, so it only polishes). Energies are amber14/GBn2
throughout. For every frame the potential energy before and after, the backbone RMSD drift that
minimisation caused and a sanity verdict are reported; the minimised frames form one all-atom trajectory (the hydrogen
variants chosen for the first frame are reused so every frame shares one topology).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from mdllm.errors import MdllmError

FORCE_FIELD = ("amber14-all.xml", "implicit/gbn2.xml")
VACUUM_FORCE_FIELD = ("amber14-all.xml",)
# A minimised frame is sane when its energy is finite and negative (a folded protein in amber14/GBn2
# has a large negative potential energy; clashes or broken bonds leave it positive) and the
# backbone moved less than this during minimisation.
MAX_DRIFT_A = 1.0


@dataclass
class RebuildResult:
    frames: list[int]  # indices of the input frames that were rebuilt
    energy_before: list[float] = field(default_factory=list)  # kJ/mol, after adding atoms, before minimising
    energy_after: list[float] = field(default_factory=list)
    drift_A: list[float] = field(default_factory=list)  # backbone (N, CA, C, O) RMSD, minimised vs input
    sane: list[bool] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # '' or why the frame failed
    trajectory: object = None  # mdtraj.Trajectory of the minimised frames that succeeded

    def summary(self) -> dict:
        def stats(values):
            v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
            return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())} if v.size else None

        return {
            "frames": len(self.frames),
            "sane_fraction": float(np.mean(self.sane)) if self.sane else 0.0,
            "energy_before_kj_mol": stats(self.energy_before),
            "energy_after_kj_mol": stats(self.energy_after),
            "backbone_drift_A": stats(self.drift_A),
            "failed": int(sum(bool(e) for e in self.errors)),
            "force_field": list(FORCE_FIELD),
            "minimisation": "amber14 in vacuum, then amber14 + GBn2; energies amber14 + GBn2",
        }


def _backbone_pdb(xyz_nm: np.ndarray, sequence: str, chain_ids) -> str:
    """PDB text of one backbone frame (L, 4, 3) nm with standard residue names."""
    from mdllm.io import THREE_LETTER

    lines, serial = [], 1
    for i, (code, chain) in enumerate(zip(sequence, chain_ids)):
        for name, element, pos in zip(("N", "CA", "C", "O"), "NCCO", xyz_nm[i] * 10.0):
            lines.append(f"ATOM  {serial:5d}  {name:<3} {THREE_LETTER.get(code, 'UNK'):>3} {str(chain)[:1]:1}"
                         f"{i + 1:4d}    {pos[0]:8.3f}{pos[1]:8.3f}{pos[2]:8.3f}  1.00  0.00          {element:>2}")
            serial += 1
    lines.append("END")
    return "\n".join(lines) + "\n"


class Rebuilder:
    """Rebuild and minimise frames of one protein; force field and platform are set up once."""

    def __init__(self, sequence: str, chain_ids=None, threads: int = 1, max_iterations: int = 1000,
                 solvent_iterations: int = 50, tolerance_kj_mol_nm: float = 10.0, force_field=FORCE_FIELD):
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
        self.properties = {"Threads": str(max(1, threads))}
        self.max_iterations = max_iterations
        self.solvent_iterations = solvent_iterations
        self.tolerance = tolerance_kj_mol_nm
        self.variants = None
        self.topology = None
        self.contexts = None  # (vacuum, implicit solvent), made for the first frame's topology

    def _add_atoms(self, xyz_nm):
        from openmm import app
        from pdbfixer import PDBFixer

        fixer = PDBFixer(pdbfile=io.StringIO(_backbone_pdb(xyz_nm, self.sequence, self.chain_ids)))
        fixer.missingResidues = {}
        fixer.findMissingAtoms()
        fixer.addMissingAtoms()
        modeller = app.Modeller(fixer.topology, fixer.positions)
        variants = modeller.addHydrogens(self.forcefield, pH=7.0, variants=self.variants)
        if self.variants is None:
            self.variants = variants
        return modeller

    def _contexts(self, topology):
        import openmm
        from openmm import app

        if self.contexts is None:
            contexts = []
            for forcefield in (self.vacuum_forcefield, self.forcefield):
                system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
                contexts.append(openmm.Context(system, openmm.VerletIntegrator(0.001), self.platform, self.properties))
            self.contexts = tuple(contexts)
            self.topology = topology
        return self.contexts

    def minimise(self, xyz_nm: np.ndarray):
        """(positions nm (N, 3), energy before, energy after) for one backbone frame (L, 4, 3);
        energies in kJ/mol with the implicit-solvent force field."""
        import openmm
        from openmm import unit

        modeller = self._add_atoms(xyz_nm)
        vacuum, solvent = self._contexts(modeller.topology)
        if modeller.topology.getNumAtoms() != self.topology.getNumAtoms():
            raise MdllmError("rebuilt frame has a different atom count from the first frame")
        solvent.setPositions(modeller.positions)
        before = solvent.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        vacuum.setPositions(modeller.positions)
        openmm.LocalEnergyMinimizer.minimize(vacuum, self.tolerance, self.max_iterations)
        solvent.setPositions(vacuum.getState(getPositions=True).getPositions())
        if self.solvent_iterations > 0:
            openmm.LocalEnergyMinimizer.minimize(solvent, self.tolerance, self.solvent_iterations)
        state = solvent.getState(getEnergy=True, getPositions=True)
        after = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        positions = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), np.float32)
        return positions, before, after

    def backbone_indices(self) -> np.ndarray:
        """(L, 4) atom indices of N, CA, C, O in the rebuilt topology."""
        index = []
        for residue in self.topology.residues():
            names = {a.name: a.index for a in residue.atoms()}
            index.append([names["N"], names["CA"], names["C"], names.get("O", names.get("OXT"))])
        return np.array(index, np.int64)


def rebuild_frames(xyz, sequence: str, chain_ids=None, frames=None, threads: int = 1, max_iterations: int = 1000,
                   solvent_iterations: int = 50, progress: bool = True,
                   label: str = "rebuild + minimise") -> RebuildResult:
    """Rebuild and minimise the given frames (default all) of backbones (F, L, 4, 3) nm;
    ``max_iterations`` of the vacuum stage, ``solvent_iterations`` of the implicit-solvent stage."""
    import mdtraj as md
    from tqdm.auto import tqdm

    from mdllm.geometry import rmsd

    xyz = np.asarray(getattr(xyz, "xyz", xyz), np.float32)
    frames = list(range(len(xyz))) if frames is None else [int(f) for f in frames]
    rebuilder = Rebuilder(sequence, chain_ids, threads=threads, max_iterations=max_iterations,
                          solvent_iterations=solvent_iterations)
    result = RebuildResult(frames)
    kept = []
    for f in tqdm(frames, desc=label, unit="frame", disable=not progress):
        try:
            if not np.isfinite(xyz[f]).all():
                raise MdllmError("non-finite coordinates")
            positions, before, after = rebuilder.minimise(xyz[f])
            bb = positions[rebuilder.backbone_indices()]
            drift = float(rmsd(bb.reshape(1, -1, 3), xyz[f].reshape(-1, 3))[0] * 10.0)
            ok = bool(np.isfinite(after) and after < 0 and drift < MAX_DRIFT_A)
            result.energy_before.append(float(before)), result.energy_after.append(float(after))
            result.drift_A.append(drift), result.sane.append(ok), result.errors.append("")
            kept.append(positions)
        except Exception as exc:  # OpenMM and PDBFixer raise many types; record and continue
            result.energy_before.append(float("nan")), result.energy_after.append(float("nan"))
            result.drift_A.append(float("nan")), result.sane.append(False)
            result.errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if kept:
        result.trajectory = md.Trajectory(np.stack(kept), md.Topology.from_openmm(rebuilder.topology))
    return result
