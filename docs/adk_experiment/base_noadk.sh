#!/usr/bin/env bash
# The base model of the adenylate kinase experiment (docs/adk_experiment.md): the recipe of the shipped
# models/motion-lm (models/motion-lm/recipe.sh), but trained on build/motion-lm-data/base.txt only, so
# that it has never seen an adenylate kinase frame (the shipped base was pretrained on the AdK
# transitions themselves, adk.txt). An experiment input, not a shipped model: it stays in build/.
# Run from the repository root; the token files come from step 1 of models/motion-lm/recipe.sh.
set -euo pipefail
THREADS=${THREADS:-2}
if grep -qi adk build/motion-lm-data/base.txt; then
  echo "build/motion-lm-data/base.txt lists adenylate kinase files" >&2; exit 1
fi
mdllm --threads "$THREADS" train --data-list build/motion-lm-data/base.txt -o build/motion-lm-noadk \
  --preset small --heads 4 --kv-heads 1 --context 4096 --window 4 --stride 1 --val-fraction 0.1 \
  --epochs 3 --max-steps 1500 --micro-batch 4 --lr 1e-3 --warmup 30 --seed 0 --checkpoint-every 50 --eval-every 100 \
  --no-progress
