#!/usr/bin/env bash
# 1 vs 2 GPUs at the same global batch (64 samples of 4 segments x 512 positions, memorize, 60 steps):
# MiniLM and a randomly initialised bert-base-geometry BERT. Throughput = tokens of steps 11..60 / their wall time,
# from metrics.jsonl (results/ddp/summarize.py).
#   MINILM_PATH=/folder/of/minilm results/ddp/run.sh OUT_DIR
set -euo pipefail
OUT=${1:-outputs/ddp}
M=${MINILM_PATH:?folder of the MiniLM weights and tokenizer}
mkdir -p "$OUT"
COMMON=(experiment=minilm_fixed_memorize "curriculum.stages=[{segments:4,steps:60}]" trainer.eval_every=1000
        trainer.log_every=5 trainer.batch_size=64 trainer.val_samples=64 seed=0)
BERT_BASE=(backbone=tiny +backbone.tokenizer.name_or_path=$M backbone.config.hidden_size=768
           backbone.config.num_hidden_layers=12 backbone.config.num_attention_heads=12
           backbone.config.intermediate_size=3072)
for n in 1 2; do
  python -m rmt_cli train "${COMMON[@]}" backbone.name_or_path=$M trainer.devices=$n hydra.run.dir=$OUT/minilm_$n
  python -m rmt_cli train "${COMMON[@]}" "${BERT_BASE[@]}" trainer.devices=$n hydra.run.dir=$OUT/bertbase_$n
done
