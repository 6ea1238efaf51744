#!/usr/bin/env bash
# The base model of the adenylate kinase experiment (docs/adk_experiment.md): the recipe of the shipped
# models/motion-lm (models/motion-lm/recipe.sh), but trained on build/motion-lm-data/base.txt only, so
# that it has never seen an adenylate kinase frame (the shipped base was pretrained on the AdK
# transitions themselves, adk.txt). An experiment input, not a shipped model: it stays in build/.
# Run from the repository root; the token files come from step 1 of models/motion-lm/recipe.sh.
# 800 steps, not the shipped recipe's 1500 (the machine was shared and slower than the 2 idle cores
# the recipe assumes). As run on 2026-12-05: the first 100 steps with --max-steps 1500, then
# interrupted and continued with --resume --max-steps 800 (learning rate of steps 31-100 at most 1.3 %
# above this script's schedule). Result: 800 steps, validation loss 5.044, token accuracy 0.158
# (validation = last 10 % of the base trajectories, none of them AdK); 27 minutes wall (23:14-23:41 UTC) on 2 cores shared with other jobs.
set -euo pipefail
THREADS=${THREADS:-2}
if grep -qi adk build/motion-lm-data/base.txt; then
  echo "build/motion-lm-data/base.txt lists adenylate kinase files" >&2; exit 1
fi
mdllm --threads "$THREADS" train --data-list build/motion-lm-data/base.txt -o build/motion-lm-noadk \
  --preset small --heads 4 --kv-heads 1 --context 4096 --window 4 --stride 1 --val-fraction 0.1 \
  --epochs 3 --max-steps 800 --micro-batch 4 --lr 1e-3 --warmup 30 --seed 0 --checkpoint-every 50 --eval-every 100 \
  --no-progress
