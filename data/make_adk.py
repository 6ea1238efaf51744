"""Recreate data/adk/ from the shared data folder: adenylate kinase (E. coli, 214 residues)
closed and open structures and three closed->open transition trajectories, protein heavy atoms
only, as XTC with one topology PDB per system.

Usage: python data/make_adk.py [SHARED_DATA_DIR]   (default: ../shared/data)
"""

import sys
from pathlib import Path

import mdtraj as md

OUT = Path(__file__).parent / "adk"
SHARED = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[2] / "shared" / "data")
SRC = SHARED / "md_trajectories/mdanalysistests_adk"


def heavy(traj):
    return traj.atom_slice(traj.topology.select("protein and not element H"))


def main():
    OUT.mkdir(exist_ok=True)
    heavy(md.load(str(SRC / "adk_closed.pdb"))).save_pdb(str(OUT / "adk_closed.pdb"))
    heavy(md.load(str(SRC / "adk_open.pdb"))).save_pdb(str(OUT / "adk_open.pdb"))
    for name, psf in [
        ("adk_dims", "adk.psf"),
        ("adk_dims2", "adk.psf"),
        ("adk_gbis_tmd-fast1_NAMD", "adk_closed_NAMD.psf"),
    ]:
        traj = heavy(md.load(str(SRC / f"{name}.dcd"), top=str(SRC / psf)))
        traj.save_xtc(str(OUT / f"{name}.xtc"))
        traj[0].save_pdb(str(OUT / f"{name}.pdb"))


if __name__ == "__main__":
    main()
