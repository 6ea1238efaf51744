"""Encode the trajectories and NMR ensembles of the shared data folder into token files for the
structure language model, with the default structure tokenizer.

    python models/structure-lm/prepare_data.py [--shared ../shared/data] [--out build/lm-data]
                                               [--tokenizer DIR] [--dry-run]

Writes OUT/<name>.npz (the `mdllm encode` layout) and data lists:
- OUT/base.txt: everything of the shared data that loaded and encoded (the first base model's data);
- OUT/md.txt: the project's own MD of fast folders in data/md;
- OUT/enlarged.txt: base.txt + md.txt (pretraining data of the shipped base model);
- OUT/adk.txt: the three AdK closed->open transitions of the repository's data/adk (fine-tuning data).
Files that cannot be read as protein backbones (CA-only models, no topology, ...) are skipped with
the reason printed; --dry-run only loads the backbones and reports what would be encoded.
"""

from __future__ import annotations

import argparse
import bz2
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# (name, trajectory, topology or None, chain or None), paths relative to the shared data folder.
SHARED_SOURCES = [
    ("adk_dims", "md_trajectories/mdanalysistests_adk/adk_dims.dcd", "md_trajectories/mdanalysistests_adk/adk.psf", None),
    ("adk_dims2", "md_trajectories/mdanalysistests_adk/adk_dims2.dcd", "md_trajectories/mdanalysistests_adk/adk.psf", None),
    ("adk_tmd", "md_trajectories/mdanalysistests_adk/adk_gbis_tmd-fast1_NAMD.dcd",
     "md_trajectories/mdanalysistests_adk/adk_closed_NAMD.psf", None),
    ("adk_oplsaa", "md_trajectories/mdanalysistests_adk/adk_oplsaa.xtc", "md_trajectories/mdanalysistests_adk/adk_oplsaa.gro", None),
    ("adk_closed", "md_trajectories/mdanalysistests_adk/adk_closed.pdb", None, None),
    ("adk_open", "md_trajectories/mdanalysistests_adk/adk_open.pdb", None, None),
    ("cobrotoxin", "md_trajectories/mdanalysistests_misc/cobrotoxin.xtc", "md_trajectories/mdanalysistests_misc/cobrotoxin.pdb", None),
    ("tz2", "md_trajectories/mdanalysistests_misc/tz2.truncoct.nc", "md_trajectories/mdanalysistests_misc/tz2.truncoct.parm7.bz2", None),
    ("ache", "md_trajectories/mdanalysistests_misc/ache.mdcrd", "md_trajectories/mdanalysistests_misc/ache.prmtop", None),
    ("villin_folded", "md_trajectories/mdanalysistests_misc/villin_folded.gro.bz2", None, None),
    ("villin_unfolded", "md_trajectories/mdanalysistests_misc/villin_unfolded.gro.bz2", None, None),
    ("bpti_mini", "md_trajectories/pyemma/bpti_mini.xtc", "md_trajectories/pyemma/bpti_ca.pdb", None),
    ("ala_dipeptide", "md_trajectories/mdtraj_tests/alanine-dipeptide-explicit.dcd",
     "md_trajectories/mdtraj_tests/alanine-dipeptide-explicit.pdb", None),
    ("frame0", "md_trajectories/mdtraj_tests/frame0.xtc", "md_trajectories/mdtraj_tests/frame0.pdb", None),
    ("ops_ala", "md_trajectories/openpathsampling/ala_small_traj.pdb", None, None),
    ("ops_trr", "md_trajectories/openpathsampling/traj.trr", "md_trajectories/openpathsampling/conf.gro", None),
    # NMR ensembles and single experimental structures
    ("1L2Y", "pdb_experimental/1L2Y.pdb", None, None),
    ("2JOF", "pdb_experimental/2JOF.pdb", None, None),
    ("1FME", "pdb_experimental/1FME.pdb", None, None),
    ("1GB1", "pdb_experimental/1GB1.pdb", None, None),
    ("1VII", "pdb_experimental/1VII.pdb", None, None),
    ("1UAO", "pdb_experimental/1UAO_model1.pdb", None, None),
    ("1YRF", "pdb_experimental/1YRF.pdb", None, None),
    ("2F4K", "pdb_experimental/2F4K.pdb", None, None),
    ("5AWL", "pdb_experimental/5AWL.pdb", None, None),
    ("1MI0", "pdb_experimental/1MI0.pdb", None, "A"),
    ("2HBB", "pdb_experimental/2HBB.pdb", None, "A"),
    ("2LZM", "pdb_experimental/2LZM.pdb", None, "A"),
    ("3DMV", "pdb_experimental/3DMV.pdb", None, "A"),
    ("1AKE", "pdb_experimental/1AKE.pdb", None, "A"),
    ("4AKE", "pdb_experimental/4AKE.pdb", None, "A"),
    ("t4l_implicit", "pdb_processed/openmmtools/T4-lysozyme-L99A-implicit_receptor.pdb", None, None),
]

# Fine-tuning data inside the repository: the AdK closed->open transitions.
ADK_SOURCES = [
    ("ft_adk_dims", "data/adk/adk_dims.xtc", "data/adk/adk_dims.pdb", None),
    ("ft_adk_dims2", "data/adk/adk_dims2.xtc", "data/adk/adk_dims2.pdb", None),
    ("ft_adk_tmd", "data/adk/adk_gbis_tmd-fast1_NAMD.xtc", "data/adk/adk_gbis_tmd-fast1_NAMD.pdb", None),
]


def md_sources():
    """The project's own MD of small fast folders (data/md, made by `mdllm simulate`)."""
    import json

    index = REPO / "data" / "md" / "index.json"
    if not index.exists():
        return []
    return [(f"md_{Path(e['path']).parent.parent.name}_{Path(e['path']).parent.name}", f"data/md/{e['path']}",
             f"data/md/{str(Path(e['path']).with_name('trajectory.pdb'))}", None)
            for e in json.loads(index.read_text())]


def unpacked(path: Path, scratch: Path) -> Path:
    """mdtraj does not read .bz2: decompress into scratch, keeping the inner suffix."""
    if path.suffix != ".bz2":
        return path
    out = scratch / path.stem
    with bz2.open(path) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "build" / "lm-data"))
    p.add_argument("--tokenizer", help="tokenizer directory (default: the shipped one)")
    p.add_argument("--dry-run", action="store_true", help="only load backbones; encode nothing")
    args = p.parse_args(argv)

    import numpy as np

    from mdllm.errors import MdllmError
    from mdllm.io import load_backbone

    shared, out = Path(args.shared), Path(args.out)
    tokenizer = None
    if not args.dry_run:
        from mdllm.tokenizer import TorsionTokenizer

        tokenizer = TorsionTokenizer.load(args.tokenizer)
        print(f"tokenizer {tokenizer.hash[:12]}, codebook {tokenizer.codebook_size}")
        out.mkdir(parents=True, exist_ok=True)
    from mdllm.tokenfile import TokenFile

    lists = {"base": [], "adk": [], "md": []}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for group, root, sources in (("base", shared, SHARED_SOURCES), ("adk", REPO, ADK_SOURCES),
                                     ("md", REPO, md_sources())):
            for name, traj, top, chain in sources:
                try:
                    traj_path = unpacked(root / traj, scratch)
                    top_path = unpacked(root / top, scratch) if top else None
                    bb = load_backbone(traj_path, top=top_path, chain=chain)
                    if bb.n_residues < 2:
                        raise MdllmError(f"{traj}: only {bb.n_residues} residue")
                    line = f"{name:<16} {bb.n_frames:>4} frames x {bb.n_residues:>3} residues  {bb.sequence[:30]}"
                    if tokenizer is not None:
                        tokens = tokenizer.encode(bb)
                        TokenFile(tokens, bb.sequence, tokenizer.hash,
                                  tokenizer.codebook_size).save(out / f"{name}.npz")
                        lists[group].append(f"{name}.npz")
                    print(line)
                except (MdllmError, OSError, ValueError, KeyError, IndexError) as exc:
                    print(f"{name:<16} skipped: {str(exc).splitlines()[0][:150]}")
    if tokenizer is not None:
        for group, names in lists.items():
            (out / f"{group}.txt").write_text("\n".join(names) + "\n")
            print(f"{out / f'{group}.txt'}: {len(names)} token files")
        # the enlarged pretraining set: the shared data plus our own MD
        (out / "enlarged.txt").write_text("\n".join(lists["base"] + lists["md"]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
