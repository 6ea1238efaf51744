"""Token files for the motion language model: every MD trajectory and NMR ensemble the project has,
encoded with the shipped motion tokenizer against key frames of the same trajectory.

    python models/motion-lm/prepare_data.py [--shared ../shared/data] [--out build/motion-lm-data]
                                            [--keys 3] [--hold-out villin ntl9 gb1]

Each trajectory is encoded against its first frame and ``--keys - 1`` later frames drawn at random (a
user's start structure is any frame of the basin, not the first one of our runs). Proteins named by
--hold-out (substrings of the source name) are left out of base.txt and listed in held_out.txt, so the
base model never sees them and ``bench/realism.py`` can test it on proteins it does not know.
Adenylate kinase is never in base.txt (the AdK experiment asks the model for a state it has not seen).
Writes OUT/<name>_k<i>.npz and the lists OUT/base.txt, OUT/held_out.txt, OUT/adk.txt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models" / "structure-lm"))
from prepare_data import ADK_SOURCES, unpacked  # noqa: E402  (the torsion model's source lists)

# Shared MD and NMR ensembles with full backbones and more than one frame (name, trajectory, topology, chain).
SHARED_SOURCES = [
    ("cobrotoxin", "md_trajectories/mdanalysistests_misc/cobrotoxin.xtc", "md_trajectories/mdanalysistests_misc/cobrotoxin.pdb", None),
    ("tz2", "md_trajectories/mdanalysistests_misc/tz2.truncoct.nc", "md_trajectories/mdanalysistests_misc/tz2.truncoct.parm7.bz2", None),
    ("ache", "md_trajectories/mdanalysistests_misc/ache.mdcrd", "md_trajectories/mdanalysistests_misc/ache.prmtop", None),
    ("trpcage_nmr_1L2Y", "pdb_experimental/1L2Y.pdb", None, None),
    ("trpcage_nmr_2JOF", "pdb_experimental/2JOF.pdb", None, None),
    ("bba_nmr_1FME", "pdb_experimental/1FME.pdb", None, None),
    ("gb1_nmr_1GB1", "pdb_experimental/1GB1.pdb", None, None),
]
DEFAULT_HOLD_OUT = ("villin", "ntl9", "gb1")


def md_sources():
    """The project's own MD (data/md, made by `mdllm simulate`), one entry per run."""
    index = json.loads((REPO / "data" / "md" / "index.json").read_text())
    return [(f"{Path(e['path']).parent.parent.name}_{Path(e['path']).parent.name}", f"data/md/{e['path']}",
             f"data/md/{Path(e['path']).with_name('trajectory.pdb')}", None) for e in index]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "build" / "motion-lm-data"))
    p.add_argument("--keys", type=int, default=3, help="key frames per trajectory (the first + random ones)")
    p.add_argument("--hold-out", nargs="*", default=list(DEFAULT_HOLD_OUT))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import tempfile

    import numpy as np

    from mdllm.encoding import encode_backbone, load_tokenizers
    from mdllm.errors import MdllmError
    from mdllm.io import load_backbone

    shared, out = Path(args.shared), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok, fold = load_tokenizers()
    print(f"motion tokenizer {tok.hash[:12]} (K={tok.codebook_size}), fold tokenizer {fold.hash[:12]}")
    rng = np.random.default_rng(args.seed)
    lists = {"base": [], "held_out": [], "adk": []}
    with tempfile.TemporaryDirectory() as tmp:
        for root, sources in ((shared, SHARED_SOURCES), (REPO, md_sources()), (REPO, ADK_SOURCES)):
            for name, traj, top, chain in sources:
                try:
                    bb = load_backbone(unpacked(root / traj, Path(tmp)),
                                       top=unpacked(root / top, Path(tmp)) if top else None, chain=chain)
                except (MdllmError, OSError, ValueError) as exc:
                    print(f"{name:<28} skipped: {str(exc).splitlines()[0][:120]}")
                    continue
                if bb.n_frames < 2:
                    print(f"{name:<28} skipped: one frame")
                    continue
                group = ("adk" if name.startswith(("ft_adk", "adk")) else
                         "held_out" if any(h in name.lower() for h in args.hold_out) else "base")
                keys = [0] + sorted(rng.choice(np.arange(1, bb.n_frames), size=min(args.keys - 1, bb.n_frames - 1),
                                               replace=False).tolist())
                for i, k in enumerate(keys):
                    enc = encode_backbone(bb, tok, key=bb.xyz[k], fold_tokenizer=fold)
                    file = f"{name}_k{i}.npz"
                    enc.save(out / file)
                    lists[group].append(file)
                print(f"{name:<28} {group:<8} {bb.n_frames:>5} frames x {bb.n_residues:>3} residues, keys {keys}")
    for group, names in lists.items():
        (out / f"{group}.txt").write_text("\n".join(names) + "\n")
        print(f"{out / f'{group}.txt'}: {len(names)} token files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
