"""Token files of elastic-network motion for the motion language model's pretraining.

    python models/motion-lm/elastic_data.py [--shared ../shared/data] [--out build/motion-lm-data]
                                            [--structures 400] [--frames 40] [--hold-out-md data/md]

The project's MD covers seven proteins; a base model trained on them alone learns their residues'
marginals and barely looks at the previous frame (bench/likelihood.py). Here, for chain segments of
20-100 residues from structures/backbones_train.npz (each a different protein or chain), a trajectory
of an anisotropic network model (mdllm.lm.surrogate.LinearSurrogate.elastic_network: normal modes,
one AR(1) process each, slow modes correlated longest), encoded against the structure itself with the
shipped tokenizers. Amplitude (mean CA RMSF 0.5-2 Å, log-uniform) and the slowest mode's lag-1
correlation (0.85-0.98) are drawn per trajectory, so that what a residue does next depends on its
own recent frames more than on any fixed per-residue distribution. Segments sharing an 8-residue
stretch with a protein of data/md are skipped, so the proteins bench/realism.py tests on stay unseen.
Writes OUT/enm_<i>.npz and the list OUT/elastic.txt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MIN_RES, MAX_RES = 20, 100
CA_BREAK_NM = 0.42  # consecutive CAs farther apart than this: a gap in the segment


def md_sequences(md_dir: Path) -> list[str]:
    from mdllm.io import load_backbone

    index = json.loads((md_dir / "index.json").read_text())
    tops = {md_dir / Path(e["path"]).with_name("trajectory.pdb") for e in index}
    return [load_backbone(t).sequence for t in sorted(tops)]


def shares_stretch(sequence: str, others: list[str], k: int = 8) -> bool:
    stretches = {o[i : i + k] for o in others for i in range(len(o) - k + 1)}
    return any(sequence[i : i + k] in stretches for i in range(len(sequence) - k + 1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "build" / "motion-lm-data"))
    p.add_argument("--structures", type=int, default=400)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--hold-out-md", default=str(REPO / "data" / "md"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import numpy as np

    from mdllm.encoding import encode_backbone, load_tokenizers
    from mdllm.errors import MdllmError
    from mdllm.io import Backbone
    from mdllm.lm.surrogate import LinearSurrogate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = np.load(Path(args.shared) / "structures" / "backbones_train.npz")
    offsets, sequences = data["offsets"], data["sequences"]
    held = md_sequences(Path(args.hold_out_md))
    tok, fold = load_tokenizers()
    rng = np.random.default_rng(args.seed)
    names, skipped = [], {"length": 0, "gap": 0, "held out": 0, "network": 0}
    for i in rng.permutation(len(sequences)):
        if len(names) == args.structures:
            break
        xyz = data["coords"][offsets[i] : offsets[i + 1]].astype(np.float64) / 10.0  # Å -> nm
        seq = str(sequences[i])
        if not MIN_RES <= len(seq) <= MAX_RES:
            skipped["length"] += 1
            continue
        if (np.linalg.norm(np.diff(xyz[:, 1], axis=0), axis=-1) > CA_BREAK_NM).any():
            skipped["gap"] += 1
            continue
        if shares_stretch(seq, held):
            skipped["held out"] += 1
            continue
        rmsf = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        rho = float(rng.uniform(0.85, 0.98))
        try:
            model = LinearSurrogate.elastic_network(xyz, rmsf_A=rmsf, slowest_autocorrelation=rho)
        except MdllmError:
            skipped["network"] += 1
            continue
        frames = model.sample(args.frames, seed=int(rng.integers(2**31)))
        n = len(seq)
        bb = Backbone(frames, seq, np.arange(1, n + 1), np.array(["A"] * n), np.arange(args.frames) * 2.0)
        name = f"enm_{len(names):04d}.npz"
        encode_backbone(bb, tok, key=xyz.astype(np.float32), fold_tokenizer=fold).save(out / name)
        names.append(name)
        if len(names) % 50 == 0:
            print(f"{len(names)} trajectories", flush=True)
    (out / "elastic.txt").write_text("\n".join(names) + "\n")
    print(f"{out / 'elastic.txt'}: {len(names)} token files; skipped {skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
