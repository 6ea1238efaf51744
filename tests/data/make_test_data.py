"""Recreate the small test copies in this folder from the project's shared data folder.

Usage: python tests/data/make_test_data.py [SHARED_DATA_DIR]   (default: ../shared/data)
Files that are copied byte for byte and files that are cut down are listed in PROVENANCE.md.
"""

import bz2
import shutil
import sys
from pathlib import Path

import mdtraj as md

HERE = Path(__file__).parent
SHARED = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data")


def copy(src, dst=None):
    shutil.copyfile(SHARED / src, HERE / (dst or Path(src).name))


def first_models_pdb(src, dst, n_models):
    """Keep the header and the first n MODEL blocks of a multi-model PDB file."""
    out, model = [], 0
    for line in (SHARED / src).read_text().splitlines(keepends=True):
        if line.startswith("MODEL"):
            model += 1
        if model > n_models and not line.startswith(("END", "CONECT", "MASTER")):
            continue
        out.append(line)
    (HERE / dst).write_text("".join(out))


def first_models_cif(src, dst, n_models):
    """Keep atom_site rows of the first n models (pdbx_PDB_model_num is the last column)."""
    out = []
    for line in (SHARED / src).read_text().splitlines(keepends=True):
        fields = line.split()
        if line.startswith(("ATOM", "HETATM")) and int(fields[-1]) > n_models:
            continue
        out.append(line)
    (HERE / dst).write_text("".join(out))


def main():
    copy("pdb_experimental/5AWL.pdb")
    first_models_pdb("pdb_experimental/1L2Y.pdb", "1L2Y_3models.pdb", 3)
    first_models_cif("pdb_experimental/1L2Y.cif", "1L2Y_3models.cif", 3)
    adk = SHARED / "md_trajectories/mdanalysistests_adk"
    copy("md_trajectories/mdanalysistests_adk/adk.psf")
    md.load(str(adk / "adk_dims.dcd"), top=str(adk / "adk.psf"))[:10].save_dcd(str(HERE / "adk_dims_10.dcd"))
    gro = md.load(str(adk / "adk_oplsaa.gro"))
    protein = gro.topology.select("protein")
    gro.atom_slice(protein).save_gro(str(HERE / "adk_oplsaa_protein.gro"))
    md.load(str(adk / "adk_oplsaa.xtc"), top=gro.topology, atom_indices=protein).save_xtc(
        str(HERE / "adk_oplsaa_protein.xtc")
    )
    copy("md_trajectories/mdanalysistests_misc/tz2.truncoct.nc")
    parm = bz2.decompress((SHARED / "md_trajectories/mdanalysistests_misc/tz2.truncoct.parm7.bz2").read_bytes())
    (HERE / "tz2.truncoct.parm7").write_bytes(parm)
    copy("md_trajectories/openpathsampling/traj.trr")
    copy("md_trajectories/openpathsampling/conf.gro")


if __name__ == "__main__":
    main()
