#!/bin/bash
# CPU check of a two-segment stage that asks only for the relations' direction through the memory (reasoning,
# MiniLM, Austen noise, segments of 64 positions, one thread per run):
#   bash results/cpu_checks/direction_stage/run.sh first                 # the one-segment stage, seed 1
#   bash results/cpu_checks/direction_stage/run.sh direction & bash results/cpu_checks/direction_stage/run.sh plain
#   bash results/cpu_checks/direction_stage/run.sh more                  # 900 more steps of plain, last weights tested
# `direction`: 600 steps of 2 segments, every question one that both facts name, both facts before the question's
# segment; `plain`: the same steps drawn as the curriculum draws them. Both start from the first stage's weights and
# are tested at 2, 4 and 8 segments of 64 positions (extrapolation.json: accuracy_several_facts_before_question).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread unless told
out=${OUT:-outputs/direction_stage}
arm=$1
if [ "$arm" = first ]; then
  rmt train experiment=paper_minilm_reasoning trainer.memory_map=0 seed=1 trainer.device=cpu \
    'curriculum.stages=[{segments:1,steps:1500,lr:1.0e-4,advance_at:0.98,segment_length:64,eval_every:100}]' \
    hydra.run.dir=$out/first
  exit
fi
if [ "$arm" = more ]; then
  rmt train experiment=paper_minilm_reasoning trainer.memory_map=0 seed=1 trainer.device=cpu trainer.init_from=$out/plain \
    'curriculum.stages=[{segments:2,steps:900,segment_length:64,eval_every:150}]' hydra.run.dir=$out/plain_more
  rmt extrapolate --checkpoint $out/plain_more/checkpoints/last-000028800 --segments 2,4,8 --samples 200 \
    segment.length=64 hydra.run.dir=$out/plain_more/extrapolate_last
  exit
fi
mix=""
[ "$arm" = direction ] && mix=",multi_fact_share:1.0,facts_before_question:true"
rmt train experiment=paper_minilm_reasoning trainer.memory_map=0 seed=1 trainer.device=cpu trainer.init_from=$out/first \
  "curriculum.stages=[{segments:2,steps:600,segment_length:64,eval_every:100$mix}]" hydra.run.dir=$out/$arm
rmt extrapolate --checkpoint $out/$arm --segments 2,4,8 --samples 200 segment.length=64 \
  hydra.run.dir=$out/$arm/extrapolate
