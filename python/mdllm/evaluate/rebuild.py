"""All-atom rebuild of backbone frames and energy minimisation (extra ``physics``).

Side chains and hydrogens are added with PDBFixer onto the N, CA, C, O of each frame, then the
structure is minimised in OpenMM in two stages: first with amber14 in vacuum (cheap; it resolves
the clashes of freshly placed side chains), then with amber14 + GBn2 implicit solvent (OpenMM's
CustomGBForce costs ~50x more per step on CPU, so it only polishes). Energies are amber14/GBn2
throughout. PDBFixer's placement of missing atoms includes its own minimisation and takes minutes
for a 200-residue protein on CPU, so by default only the first frame goes through PDBFixer; later
frames get the first frame's minimised side chains and hydrogens carried over in each residue's
N-CA-C frame (a starting guess that their own minimisation then relaxes). For every frame the potential energy before and after, the backbone RMSD drift that
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
# has a large negative potential energy; clashes or broken bonds leave it positive), the backbone
# moved less than MAX_DRIFT_A (RMSD) and no N, CA or C atom more than MAX_DISPLACEMENT_A during
# minimisation (a repaired defect moves a few atoms far), and the minimised backbone passes
# check_backbone.
MAX_DRIFT_A = 1.0
MAX_DISPLACEMENT_A = 2.0
# The vacuum stage holds the backbone heavy atoms near the input with this spring (kJ/mol/nm^2), so
# that it relaxes side chains rather than collapsing the chain without solvent; the implicit-solvent
# stage is unrestrained, and the drift it causes is what the report shows.
RESTRAINT_K = 1000.0


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
            "max_backbone_displacement_A": stats(self.max_displacement_A),
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
                 solvent_iterations: int = 20, tolerance_kj_mol_nm: float = 10.0, force_field=FORCE_FIELD,
                 transfer_side_chains: bool = True):
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
        self.transfer_side_chains = transfer_side_chains
        self.template = None  # (residue of each atom, its coordinates in that residue's frame)

    def _add_atoms(self, xyz_nm):
        from openmm import app
        from pdbfixer import PDBFixer

        from mdllm.simulate.prepare import seeded_python_random

        fixer = PDBFixer(pdbfile=io.StringIO(_backbone_pdb(xyz_nm, self.sequence, self.chain_ids)))
        fixer.missingResidues = {}
        fixer.findMissingAtoms()
        fixer.addMissingAtoms(seed=0)  # PDBFixer may run Langevin dynamics to resolve clashes; fix it
        modeller = app.Modeller(fixer.topology, fixer.positions)
        with seeded_python_random(0):  # hydrogens start at random positions: same frame, same rebuild
            variants = modeller.addHydrogens(self.forcefield, pH=7.0, variants=self.variants)
        if self.variants is None:
            self.variants = variants
        return modeller

    def _contexts(self, topology):
        import openmm
        from openmm import app

        if self.contexts is None:
            contexts = []
            # The vacuum stage only removes clashes: a 1 nm cutoff makes it several times cheaper.
            self.topology = topology
            for forcefield, method in ((self.vacuum_forcefield, app.CutoffNonPeriodic), (self.forcefield, app.NoCutoff)):
                system = forcefield.createSystem(topology, nonbondedMethod=method, nonbondedCutoff=1.0,
                                                 constraints=app.HBonds)
                if forcefield is self.vacuum_forcefield:
                    self.restraint = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
                    self.restraint.addGlobalParameter("k", RESTRAINT_K)
                    for name in ("x0", "y0", "z0"):
                        self.restraint.addPerParticleParameter(name)
                    for index in self.backbone_indices().ravel():
                        self.restraint.addParticle(int(index), [0.0, 0.0, 0.0])
                    system.addForce(self.restraint)
                contexts.append(openmm.Context(system, openmm.VerletIntegrator(0.001), self.platform, self.properties))
            self.contexts = tuple(contexts)
        return self.contexts

    def _restrain_to(self, xyz_nm):
        for k, index in enumerate(self.backbone_indices().ravel()):
            self.restraint.setParticleParameters(k, int(index), [float(v) for v in np.reshape(xyz_nm, (-1, 3))[k]])
        self.restraint.updateParametersInContext(self.contexts[0])

    def minimise(self, xyz_nm: np.ndarray):
        """(positions nm (N, 3), energy before, energy after) for one backbone frame (L, 4, 3);
        energies in kJ/mol with the implicit-solvent force field."""
        import openmm
        from openmm import unit

        if self.template is None or not self.transfer_side_chains:
            modeller = self._add_atoms(xyz_nm)
            vacuum, solvent = self._contexts(modeller.topology)
            if modeller.topology.getNumAtoms() != self.topology.getNumAtoms():
                raise MdllmError("rebuilt frame has a different atom count from the first frame")
            start = np.asarray(modeller.positions.value_in_unit(unit.nanometer), np.float64)
        else:
            vacuum, solvent = self.contexts
            start = self._transfer(xyz_nm)
        solvent.setPositions(start)
        before = solvent.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        self._restrain_to(xyz_nm)
        vacuum.setPositions(start)
        openmm.LocalEnergyMinimizer.minimize(vacuum, self.tolerance, self.max_iterations)
        solvent.setPositions(vacuum.getState(getPositions=True).getPositions())
        if self.solvent_iterations > 0:
            openmm.LocalEnergyMinimizer.minimize(solvent, self.tolerance, self.solvent_iterations)
        state = solvent.getState(getEnergy=True, getPositions=True)
        after = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        positions = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), np.float32)
        if self.template is None:
            self._remember(positions)
        return positions, before, after

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
        if getattr(self, "_backbone", None) is None:
            index = []
            for residue in self.topology.residues():
                names = {a.name: a.index for a in residue.atoms()}
                index.append([names["N"], names["CA"], names["C"], names.get("O", names.get("OXT"))])
            self._backbone = np.array(index, np.int64)
        return self._backbone


def rebuild_frames(xyz, sequence: str, chain_ids=None, frames=None, threads: int = 1, max_iterations: int = 1000,
                   solvent_iterations: int = 20, progress: bool = True, label: str = "rebuild + minimise",
                   transfer_side_chains: bool = True) -> RebuildResult:
    """Rebuild and minimise the given frames (default all) of backbones (F, L, 4, 3) nm;
    ``max_iterations`` of the vacuum stage, ``solvent_iterations`` of the implicit-solvent stage."""
    import mdtraj as md
    from tqdm.auto import tqdm

    from mdllm.evaluate.validity import check_backbone
    from mdllm.geometry import superpose

    xyz = np.asarray(getattr(xyz, "xyz", xyz), np.float32)
    frames = list(range(len(xyz))) if frames is None else [int(f) for f in frames]
    rebuilder = Rebuilder(sequence, chain_ids, threads=threads, max_iterations=max_iterations,
                          solvent_iterations=solvent_iterations, transfer_side_chains=transfer_side_chains)
    result = RebuildResult(frames)
    kept = []
    for f in tqdm(frames, desc=label, unit="frame", disable=not progress):
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
            ok = bool(np.isfinite(after) and after < 0 and drift < MAX_DRIFT_A
                      and displacement < MAX_DISPLACEMENT_A and backbone_ok)
            result.energy_before.append(float(before)), result.energy_after.append(float(after))
            result.drift_A.append(drift), result.max_displacement_A.append(displacement)
            result.sane.append(ok), result.errors.append("")
            kept.append(positions)
        except Exception as exc:  # OpenMM and PDBFixer raise many types; record and continue
            result.energy_before.append(float("nan")), result.energy_after.append(float("nan"))
            result.drift_A.append(float("nan")), result.max_displacement_A.append(float("nan"))
            result.sane.append(False)
            result.errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if kept:
        result.trajectory = md.Trajectory(np.stack(kept), md.Topology.from_openmm(rebuilder.topology))
    return result
