"""Throughput (ns/day) of `mdllm simulate`'s systems: amber14 + GBn2 implicit solvent, 4 fs steps with
hydrogen mass repartitioning, on one OpenMM platform. Usage:
    python bench/simulate.py [PDB ...] [--steps 1000] [--platform CPU] [--threads 1] [--explicit]
(default PDB: tests/data/5AWL.pdb, chignolin)."""

import argparse
import time

from common import ROOT, machine, report

from mdllm.simulate.prepare import prepare_structure
from mdllm.simulate.system import (
    Physics,
    add_barostat,
    create_system,
    load_forcefield,
    make_integrator,
    platform_candidates,
    solvate,
)


def ns_per_day(pdb, physics, steps, platform, threads):
    from openmm import unit
    from openmm.app import Simulation

    forcefield = load_forcefield(physics)
    prepared = prepare_structure(pdb, forcefield=forcefield)
    topology, positions = solvate(prepared, physics, forcefield)
    system = add_barostat(create_system(topology, physics, forcefield, source=pdb), physics, 300.0)
    plat, properties = platform_candidates(platform, threads)[0]
    sim = Simulation(topology, system, make_integrator(physics, 300.0, 1), plat, properties)
    sim.context.setPositions(positions)
    sim.minimizeEnergy(tolerance=10 * unit.kilojoule_per_mole / unit.nanometer)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    sim.step(max(10, steps // 10))  # warm-up
    t0 = time.perf_counter()
    sim.step(steps)
    seconds = time.perf_counter() - t0
    return topology.getNumAtoms(), prepared.notes["residues"], steps * physics.timestep_fs * 1e-6 / seconds * 86400


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pdb", nargs="*", default=[str(ROOT / "tests" / "data" / "5AWL.pdb")])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--platform", default=None, help="default: CUDA, OpenCL, then CPU")
    parser.add_argument("--threads", type=int, default=0, help="CPU platform threads (0 = OpenMM's default)")
    parser.add_argument("--explicit", action="store_true", help="TIP3P-FB explicit solvent instead of GBn2")
    args = parser.parse_args()
    physics = Physics(solvent="explicit" if args.explicit else "implicit")
    platform = args.platform or platform_candidates(None)[0][0].getName()
    rows, result = (
        [],
        {
            "bench": "simulate",
            "solvent": physics.solvent,
            "platform": platform,
            "threads": args.threads,
            "steps": args.steps,
            **machine(),
            "systems": {},
        },
    )
    for pdb in args.pdb:
        atoms, residues, rate = ns_per_day(pdb, physics, args.steps, platform, args.threads)
        name = pdb.rsplit("/", 1)[-1]
        rows.append([name, residues, atoms, rate])
        result["systems"][name] = {"residues": residues, "atoms": atoms, "ns_per_day": round(rate, 2)}
    report(
        f"OpenMM {physics.solvent} solvent, 4 fs, {platform} platform, {args.steps} steps",
        ["structure", "residues", "atoms", "ns/day"],
        rows,
        result,
    )


if __name__ == "__main__":
    main()
