#!/usr/bin/env bash
# The base model of the adenylate kinase experiment (docs/adk_experiment.md): the recipe of the shipped
# models/motion-lm (models/motion-lm/recipe.sh, step 2: frame span 256, elastic-network data, 2000
# steps), but without build/motion-lm-data/adk.txt, so that it has never seen an adenylate kinase frame
# (the shipped base was pretrained on the AdK transitions themselves). The elastic-network segments are
# 20-100 residues; the only AdK chains of structures/backbones_train.npz (1ANK, 2AKY) are 214 and 218
# residues long, so none of them is in elastic.txt (checked below as well). An experiment input, not a
# shipped model: it stays in build/. Run from the repository root after steps 1 and 1b of the recipe.
set -euo pipefail
THREADS=${THREADS:-2}
DATA=build/motion-lm-data
if grep -qi adk "$DATA/base.txt" "$DATA/elastic.txt"; then
  echo "$DATA/base.txt or elastic.txt lists adenylate kinase files" >&2; exit 1
fi
cat "$DATA/base.txt" "$DATA/elastic.txt" > "$DATA/pretrain-noadk.txt"
mdllm --threads "$THREADS" train --data-list "$DATA/pretrain-noadk.txt" -o build/motion-lm-noadk \
  --preset small --heads 4 --kv-heads 1 --context 4096 --window 4 --stride 1 --val-fraction 0.1 \
  --epochs 3 --max-steps 2000 --micro-batch 4 --lr 1e-3 --warmup 30 --seed 0 --checkpoint-every 100 --eval-every 500 \
  --no-progress
