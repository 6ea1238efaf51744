"""Turn a start structure into a complete, protonated protein that the force field can parameterise.

PDBFixer does the repair (non-standard amino acids to their parents, missing internal residues
listed by SEQRES, missing heavy atoms); we check what it cannot fix -- unknown residues inside a
chain, chain breaks with nothing to fill them -- and stop with one clear line before any long work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mdllm.errors import in_file

WATER_NAMES = {"HOH", "WAT", "H2O", "TIP3", "SOL"}
# A C(i)-N(i+1) distance beyond this (nm) is a chain break: a peptide bond is 0.133 nm.
MAX_PEPTIDE_BOND_NM = 0.25


@dataclass
class Prepared:
    """A repaired structure ready for the force field, with a record of what was changed."""

    topology: object  # openmm.app.Topology
    positions: object  # openmm Quantity, nm
    notes: dict = field(default_factory=dict)


def prepare_structure(
    path, chains=None, ph: float = 7.0, keep_water: bool = False, keep_ligands: bool = False, forcefield=None
) -> Prepared:
    """Read ``path`` (PDB or mmCIF; the first model of an NMR ensemble) and repair it.

    chains: chain ids to keep (default all). Waters and ligands are dropped unless asked for;
    kept ligands must match a template of ``forcefield`` as they are (ions do, organic ligands do not).
    Hydrogens are removed and re-added for ``ph`` so that protonation never depends on the source.
    """
    from openmm import Platform
    from openmm.app import Modeller
    from pdbfixer import PDBFixer
    from pdbfixer.pdbfixer import dnaResidues, proteinResidues, rnaResidues

    polymer_names = set(proteinResidues) | set(dnaResidues) | set(rnaResidues)
    try:
        fixer = PDBFixer(filename=str(path), platform=Platform.getPlatformByName("Reference"))
    except FileNotFoundError:
        raise in_file(path, "no such file") from None
    except Exception as exc:
        raise in_file(path, f"cannot read as a PDB/mmCIF structure: {_first_line(exc)}") from None
    notes = {"source": str(path), "ph": ph}

    _select_chains(path, fixer, chains)
    notes["chains"] = sorted({c.id for c in fixer.topology.chains()})

    fixer.findNonstandardResidues()
    notes["replaced_nonstandard"] = [f"{r.name}{r.id}{r.chain.id}->{new}" for r, new in fixer.nonstandardResidues]
    replaced = {r for r, _ in fixer.nonstandardResidues}
    _check_unknown_residues(path, fixer.topology, polymer_names, replaced)
    fixer.replaceNonstandardResidues()

    removed = _remove_heterogens(path, fixer, polymer_names, keep_water, keep_ligands, forcefield)
    notes["removed"] = removed
    if not any(r.name in polymer_names for r in fixer.topology.residues()):
        raise in_file(path, "no protein residues to simulate" + (f" in chain(s) {', '.join(chains)}" if chains else ""))

    fixer.findMissingResidues()
    chain_lengths = {c.index: len(list(c.residues())) for c in fixer.topology.chains()}
    # Missing termini would be built as floppy, unrestrained tails: we only fill internal gaps.
    skipped = {k: v for k, v in fixer.missingResidues.items() if k[1] in (0, chain_lengths[k[0]])}
    for key in skipped:
        del fixer.missingResidues[key]
    notes["added_residues"] = {f"chain {k[0]} @ {k[1]}": v for k, v in fixer.missingResidues.items()}
    notes["terminal_residues_not_built"] = {f"chain {k[0]} @ {k[1]}": v for k, v in skipped.items()}
    fixer.findMissingAtoms()
    notes["added_atoms"] = sum(len(a) for a in fixer.missingAtoms.values()) + sum(
        len(a) for a in fixer.missingTerminals.values()
    )
    fixer.addMissingAtoms(seed=1)
    _check_chain_breaks(path, fixer.topology, fixer.positions, polymer_names)

    modeller = Modeller(fixer.topology, fixer.positions)
    modeller.delete([a for a in modeller.topology.atoms() if a.element is not None and a.element.symbol == "H"])
    # The Reference platform makes the placement of new atoms (short minimizations) reproducible.
    try:
        modeller.addHydrogens(forcefield=forcefield, pH=ph, platform=Platform.getPlatformByName("Reference"))
    except ValueError as exc:  # OpenMM found no template: often wrong element columns (CA read as calcium)
        raise in_file(
            path,
            f"the force field cannot place hydrogens: {_first_line(exc)} Check the element columns "
            "(77-78) of the file, or write it again with mdtraj, which assigns elements from atom names.",
        ) from None
    notes["sequence"] = _sequence(modeller.topology)
    notes["atoms"] = modeller.topology.getNumAtoms()
    notes["residues"] = modeller.topology.getNumResidues()
    return Prepared(modeller.topology, modeller.positions, notes)


def _select_chains(path, fixer, chains):
    if not chains:
        return
    present = [c.id for c in fixer.topology.chains()]
    missing = [c for c in chains if c not in present]
    if missing:
        raise in_file(path, f"no chain {', '.join(missing)} (chains: {', '.join(dict.fromkeys(present))})")
    fixer.removeChains(chainIds=[c for c in set(present) if c not in chains])


def _check_unknown_residues(path, topology, polymer_names, replaced):
    """A residue the force field cannot know, sitting inside a polymer chain, cannot be removed
    (that would break the chain) nor parameterised: stop."""
    for chain in topology.chains():
        residues = list(chain.residues())
        polymer = [i for i, r in enumerate(residues) if r.name in polymer_names or r in replaced]
        if not polymer:
            continue
        for residue in residues[polymer[0] : polymer[-1] + 1]:
            if residue.name == "UNK" or (
                residue.name not in polymer_names and residue not in replaced and residue.name not in WATER_NAMES
            ):
                raise in_file(
                    path,
                    f"unknown residue {residue.name} {residue.id} in chain {chain.id}: "
                    f"no force-field template and no standard parent residue",
                )


def _remove_heterogens(path, fixer, polymer_names, keep_water, keep_ligands, forcefield):
    from openmm.app import Modeller

    water = [r for r in fixer.topology.residues() if r.name in WATER_NAMES]
    ligands = [r for r in fixer.topology.residues() if r.name not in polymer_names and r.name not in WATER_NAMES]
    if keep_ligands and ligands:
        _check_ligand_templates(path, fixer, ligands, forcefield)
    drop = ([] if keep_water else water) + ([] if keep_ligands else ligands)
    if drop:
        modeller = Modeller(fixer.topology, fixer.positions)
        modeller.delete(drop)
        fixer.topology, fixer.positions = modeller.topology, modeller.positions
    names = sorted({r.name for r in drop})
    return {name: sum(r.name == name for r in drop) for name in names}


def _check_ligand_templates(path, fixer, ligands, forcefield):
    """Kept ligands must be parameterisable as they are: test them alone against the force field."""
    from openmm.app import Modeller

    keep = set(ligands)
    modeller = Modeller(fixer.topology, fixer.positions)
    modeller.delete([r for r in modeller.topology.residues() if r.index not in {x.index for x in keep}])
    if forcefield is None:
        return
    unmatched = forcefield.getUnmatchedResidues(modeller.topology)
    if unmatched:
        names = ", ".join(sorted({f"{r.name} {r.id}" for r in unmatched}))
        raise in_file(
            path,
            f"ligand(s) {names} have no template in the force field; drop --keep-ligands "
            "(mdllm adds no parameters beyond the force field's own)",
        )


def _check_chain_breaks(path, topology, positions, polymer_names):
    from openmm.unit import nanometer

    xyz = np.asarray(positions.value_in_unit(nanometer))
    for chain in topology.chains():
        residues = [r for r in chain.residues() if r.name in polymer_names]
        for prev, cur in zip(residues, residues[1:]):
            c = next((a.index for a in prev.atoms() if a.name == "C"), None)
            n = next((a.index for a in cur.atoms() if a.name == "N"), None)
            if c is None or n is None:
                continue
            gap = float(np.linalg.norm(xyz[c] - xyz[n]))
            if gap > MAX_PEPTIDE_BOND_NM:
                raise in_file(
                    path,
                    f"chain {chain.id} is broken between {prev.name} {prev.id} and {cur.name} {cur.id} "
                    f"(C-N {gap:.2f} nm) and no SEQRES record lists residues to fill the gap; "
                    "fix the structure or select other chains with --chain",
                )


def _sequence(topology) -> str:
    from mdllm.io import THREE_LETTER

    one_letter = {three: one for one, three in THREE_LETTER.items() if one != "X"}
    return "/".join(
        "".join(one_letter[r.name] for r in chain.residues() if r.name in one_letter)
        for chain in topology.chains()
        if any(r.name in one_letter for r in chain.residues())
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
