#!/bin/bash
# CPU check: does an associative memory (memory.associative) carry reasoning's relations with their direction where
# plain memory tosses a coin? Both arms start from the one-segment first stage of ../direction_stage/ (MiniLM,
# 64-position segments, seed 1) and train STEPS steps of two segments with every fact before the question's segment,
# side by side, one thread each; then each is tested at 2, 4 and 8 segments.
#   FIRST=outputs/direction_stage/first bash results/cpu_checks/associative_memory/run.sh plain &
#   FIRST=outputs/direction_stage/first bash results/cpu_checks/associative_memory/run.sh associative
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:-outputs/associative_memory}
arm=$1
extra=""
[ "$arm" = associative ] && extra="memory.associative=true trainer.memory_lr_scale=10"
rmt train experiment=paper_minilm_reasoning trainer.memory_map=0 seed=1 trainer.device=cpu trainer.init_from=${FIRST:?} $extra \
  "curriculum.stages=[{segments:2,steps:${STEPS:-800},segment_length:64,eval_every:200,facts_before_question:true}]" \
  hydra.run.dir=$out/$arm
rmt extrapolate --checkpoint $out/$arm --segments 2,4,8 --samples 200 segment.length=64 \
  hydra.run.dir=$out/$arm/extrapolate
