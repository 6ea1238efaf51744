"""Context decoders compared (models/motiontoken/RECIPE.md, "Context decoder").

For each decoder file (or ``none``: key + code), decode as generation does (context decoder, then the
projection onto the key's geometry) and measure:

- round trip of held-out MD (key = first frame): median backbone RMSD to the true frame (Å) and the
  fraction of frames valid by mdllm.evaluate.check_backbone;
- language-model draws (token files of ``mdllm generate --no-guard --no-refine``): fraction valid, and
  per-residue CA RMSF against the second half of the protein's MD (Pearson r, ratio of means).

    python docs/motion_context/compare.py none models/motiontoken/context_decoder.safetensors \\
        --generated trpcage_2JOF=runs/gen_off_trpcage_2JOF.tokens.npz ...

The token files of the RECIPE table came from the LoRA 16 fine-tunes of bench/realism.py (session 13,
runs/realism-s13-lora16), 4 walkers x 100 frames, seed 0:
``mdllm generate runs/realism-s12-lora16/P/motion/export/model.gguf --start runs/realism-s13-lora16/P/start.pdb
--frames 100 --walkers 4 --seed 0 --no-guard --no-refine -o runs/gen_off_P.xtc``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = {
    "Trp-cage rep1": "data/md/trpcage_2JOF/T300K_rep1",
    "BBA rep1": "data/md/bba_1FME/T300K_rep1",
    "villin rep1": "data/md/villin_2F4K/T300K_rep1",
    "NTL9 rep1": "data/md/ntl9_2HBB/T300K_rep1",
    "AdK DIMS2": "data/adk/adk_dims2",
    "AdK GBIS": "data/adk/adk_gbis_tmd-fast1_NAMD",
}


def load(path: str):
    from mdllm.io import load_backbone

    p = ROOT / path
    if p.is_dir():
        return load_backbone(p / "trajectory.xtc", top=p / "trajectory.pdb")
    return load_backbone(p.with_suffix(".xtc"), top=p.with_suffix(".pdb"))


def tokenizer_with(decoder: str):
    from mdllm.tokenizer.motion import MotionTokenizer
    from mdllm.tokenizer.motion_context import FILE_NAME

    folder = Path(tempfile.mkdtemp())
    for name in ("config.json", "model.safetensors"):
        shutil.copy(ROOT / "models" / "motiontoken" / name, folder / name)
    if decoder != "none":
        shutil.copy(decoder, folder / FILE_NAME)
    return MotionTokenizer.load(folder)


def ca_rmsf(xyz, key):
    from mdllm.tokenizer.motion import superpose_on_key

    ca = superpose_on_key(xyz, key)[:, :, 1]
    return np.sqrt(((ca - ca.mean(0)) ** 2).sum(-1).mean(0))


def main():
    from mdllm.encoding import decode_tokens
    from mdllm.evaluate import check_backbone
    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom
    from mdllm.tokenizer.motion import superpose_on_key

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("decoders", nargs="+", help="context_decoder.safetensors files, or none")
    ap.add_argument("--generated", nargs="*", default=[], metavar="PROTEIN=TOKENS.npz")
    args = ap.parse_args()
    trajectories = {name: load(path) for name, path in HELD_OUT.items()}
    for decoder in args.decoders:
        tok = tokenizer_with(decoder)
        print(f"\n## {decoder}")
        for name, bb in trajectories.items():
            key = bb.xyz[0]
            xyz = decode_tokens(tok, tok.encode(bb.xyz, key), key, sequence=bb.sequence)
            rmsd = np.median(backbone_rmsd_angstrom(xyz, superpose_on_key(bb.xyz, key)))
            print(f"round trip {name}: {rmsd:.2f} A, valid {check_backbone(xyz, bb.sequence).valid.mean():.0%}")
        for item in args.generated:
            protein, path = item.split("=")
            saved = np.load(path)
            tokens, key, sequence = saved["tokens"], saved["key_xyz"], str(saved["sequence"])
            xyz = decode_tokens(tok, tokens.reshape(-1, tokens.shape[-1]), key, sequence=sequence)
            md = load(f"data/md/{protein}/T300K_rep1").xyz
            held, drawn = ca_rmsf(md[len(md) // 2 :], key), ca_rmsf(xyz, key)
            print(
                f"generated {protein}: valid {check_backbone(xyz, sequence).valid.mean():.1%}, "
                f"RMSF r {np.corrcoef(held, drawn)[0, 1]:.2f}, ratio {drawn.mean() / held.mean():.2f}"
            )


if __name__ == "__main__":
    main()
