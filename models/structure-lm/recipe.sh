#!/usr/bin/env bash
# Recipe of the shipped structure language model (models/structure-lm) and of the AdK LoRA fine-tune
# that checks it. Run from the repository root with the train extra installed and the default
# structure tokenizer in models/torsiontoken. CPU: about 2 cores; see README.md here for timings.
set -euo pipefail
THREADS=${THREADS:-1}  # 2 threads oversubscribe a shared 2-core machine (bench/lm.py)
SHARED=${SHARED:-../shared/data}
TOKENIZER=${TOKENIZER:-}  # tokenizer directory; empty = the shipped default (models/torsiontoken)

# 1. Token files: every trajectory and NMR ensemble of the shared data that loads as a protein backbone
#    (base.txt), the project's own MD of five fast folders in data/md (md.txt), both together
#    (enlarged.txt), and the three AdK closed->open transitions of data/adk (adk.txt).
python models/structure-lm/prepare_data.py --shared "$SHARED" --out build/lm-data ${TOKENIZER:+--tokenizer "$TOKENIZER"}

# 2. Base model from scratch on the enlarged data. Validation = last 10% of every trajectory's frames
#    (never trained on). Context 4096 so that generation can hold up to 16 AdK frames (training windows
#    are 4 frames). 4 query heads of 64 dims sharing one key/value head: llama.cpp's CPU attention over
#    whole-protein contexts is about twice as fast as with the preset's 8 heads of 32 (bench/generate.py).
mdllm --threads "$THREADS" train --data-list build/lm-data/enlarged.txt -o build/lm-enlarged \
  --preset small --heads 4 --kv-heads 1 --context 4096 --window 4 --stride 1 --val-fraction 0.1 \
  --epochs 4 --micro-batch 4 --lr 1e-3 --warmup 20 --seed 0 --checkpoint-every 25
cp build/lm-enlarged/config.json build/lm-enlarged/model.safetensors build/lm-enlarged/history.json models/structure-lm/
mdllm export models/structure-lm -o models/structure-lm/structure-lm.f16.gguf --type f16 --check

# 3. LoRA fine-tune of the base on the AdK transitions, same window and validation split; its first
#    validation point (step 0) is the base model's loss on the held-out AdK frames.
mdllm --threads "$THREADS" train --data-list build/lm-data/adk.txt --base models/structure-lm \
  -o build/lm-adk-lora2 --lora-rank 8 --lora-alpha 16 \
  --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj \
  --window 4 --stride 1 --val-fraction 0.1 --epochs 1 --micro-batch 4 --lr 3e-4 --warmup 10 --seed 0 \
  --eval-every 20 --no-progress
mdllm export build/lm-adk-lora2 -o build/lm-adk-lora2/adk-lora.f16.gguf --type f16 --check
# (With the previous base, a first attempt of 3 epochs at lr 1e-3 over-fitted after epoch 1.)

# 4. Curves of both runs.
python models/structure-lm/report.py build/lm-enlarged build/lm-adk-lora2 > models/structure-lm/CURVES.md
