#!/usr/bin/env bash
# Recipe of the shipped motion-token language model (models/motion-lm). Run from the repository root
# with the train extra installed and the shipped tokenizers (models/motiontoken, models/torsiontoken).
# CPU: 2 cores, about 25 minutes (elastic data 3, training 20); see README.md here for what was measured.
set -euo pipefail
THREADS=${THREADS:-2}
SHARED=${SHARED:-../shared/data}

# 1. Token files: every MD trajectory and NMR ensemble with more than one frame, each against its first
#    frame and two random frames (key frames), with the key frame's fold as torsion codes. Villin, BBA
#    and Trp-cage are held out (bench/realism.py tests on them); AdK goes to adk.txt.
python models/motion-lm/prepare_data.py --shared "$SHARED" --out build/motion-lm-data --keys 3 \
  --hold-out villin bba trpcage
cat build/motion-lm-data/base.txt build/motion-lm-data/adk.txt > build/motion-lm-data/pretrain.txt

# 1b. Elastic-network motion of 400 chain segments (20-100 residues) of structures/backbones_train.npz
#     (models/motion-lm/elastic_data.py: each its own protein, one AR(1) process per normal mode),
#     so the model learns across many folds how a residue's next frame follows from its recent ones.
python models/motion-lm/elastic_data.py --shared "$SHARED" --out build/motion-lm-data --structures 400 --frames 40
cat build/motion-lm-data/pretrain.txt build/motion-lm-data/elastic.txt > build/motion-lm-data/pretrain-enm.txt

# 2. Base model from scratch (the codes' embeddings start from their displacement geometry, see
#    mdllm.lm.model.init_motion_codes; rotary positions scaled so a frame spans 256 of them in every
#    protein, mdllm.lm.model.ModelConfig.frame_span, the default of new motion models).
#    Validation = last 10 % of every trajectory's frames.
mdllm --threads "$THREADS" train --data-list build/motion-lm-data/pretrain-enm.txt -o build/motion-lm \
  --preset small --heads 4 --kv-heads 1 --context 4096 --window 4 --stride 1 --val-fraction 0.1 \
  --epochs 3 --max-steps 2000 --micro-batch 4 --lr 1e-3 --warmup 30 --seed 0 --checkpoint-every 100 --eval-every 500
cp build/motion-lm/config.json build/motion-lm/model.safetensors build/motion-lm/history.json models/motion-lm/
mdllm export models/motion-lm -o models/motion-lm/motion-lm.f16.gguf --type f16 --check
