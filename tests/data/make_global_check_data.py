"""Recreate the small NTL9 files of the global-check tests (tests/test_evaluate_global.py).

Usage: python tests/data/make_global_check_data.py [RUN_DIR]
(default RUN_DIR: runs/unfolded-ntl9/ntl9_2HBB, made by
``python bench/realism.py --proteins ntl9_2HBB --run T300K_rep0 --kinds torsion --guard off
--frames 50 --walkers 2 --out runs/unfolded-ntl9``: the shipped torsion model fine-tuned (200 steps) on
the first 5 frames of data/md/ntl9_2HBB/T300K_rep0, 2 walkers x 50 frames generated from its first frame
without the guard). Backbone atoms N, CA, C, O only; see PROVENANCE.md.
"""

import sys
from pathlib import Path

import mdtraj as md

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
RUN = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "unfolded-ntl9" / "ntl9_2HBB"


def backbone(traj):
    return traj.atom_slice(traj.topology.select("protein and name N CA C O"))


def main():
    mdrun = ROOT / "data" / "md" / "ntl9_2HBB" / "T300K_rep0"
    ref = backbone(md.load(str(mdrun / "trajectory.xtc"), top=str(mdrun / "trajectory.pdb")))
    ref.save_xtc(str(HERE / "ntl9_md300_bb.xtc"))
    ref[0].save_pdb(str(HERE / "ntl9_md300_bb.pdb"))
    gen_dir = RUN / "torsion-noguard" / "generate"
    gen = backbone(md.load(str(gen_dir / "generated.xtc"), top=str(gen_dir / "generated.pdb")))[::2]
    gen.save_xtc(str(HERE / "ntl9_torsion_unfolded.xtc"))
    gen[0].save_pdb(str(HERE / "ntl9_torsion_unfolded.pdb"))


if __name__ == "__main__":
    main()
