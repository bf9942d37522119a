#!/usr/bin/env bash
# 1 vs 2 GPUs, same global batch: MiniLM and a bert-base-geometry backbone, memorize, 4 segments of 512
cd "$(dirname "$0")/.."
pip install --no-index --no-deps --target /tmp/site .carry/whl/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD/src RMT_DATA_DIR=$PWD/.carry PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
M=MINILM_FOLDER
mkdir -p /root/ddp && nvidia-smi > /root/ddp/nvidia-smi.txt
COMMON=(experiment=minilm_fixed_memorize "curriculum.stages=[{segments:4,steps:60}]" trainer.eval_every=1000
        trainer.log_every=5 trainer.batch_size=64 trainer.val_samples=64 seed=0)
BERT_BASE=(backbone=tiny +backbone.tokenizer.name_or_path=$M backbone.config.hidden_size=768
           backbone.config.num_hidden_layers=12 backbone.config.num_attention_heads=12
           backbone.config.intermediate_size=3072)
for n in 1 2; do
  /usr/bin/time -v python -m rmt_cli train "${COMMON[@]}" backbone.name_or_path=$M trainer.devices=$n \
      hydra.run.dir=/root/ddp/minilm_$n > /root/ddp/minilm_$n.out 2>&1
  python -m rmt_cli train "${COMMON[@]}" "${BERT_BASE[@]}" trainer.devices=$n \
      hydra.run.dir=/root/ddp/bertbase_$n > /root/ddp/bertbase_$n.out 2>&1
done
echo done > /root/ddp/DONE
