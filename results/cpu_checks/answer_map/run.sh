#!/bin/bash
# CPU check of trainer.memory_map_target=answer on detect: the baseline command of ../carry_memory/run.sh (its
# `carry_memory: 0.0` run: 128-position segments, MiniLM, Austen noise, seed 0) with the memory also asked, by a linear
# layer used only in training, for the answer after every segment from the fact's on; then extrapolated. One thread.
#   bash results/cpu_checks/answer_map/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:-outputs/answer_map}/answer
rmt train task=detect curriculum.advance_at=null trainer.memory_map=1.0 trainer.memory_map_target=answer \
  "curriculum.stages=[{segments:1,steps:150},{segments:2,steps:100},{segments:[2,6],steps:200,val_segments:16}]" \
  hydra.run.dir=$out/train
rmt extrapolate --checkpoint $out/train --segments 4,16,64,256 --samples 100 hydra.run.dir=$out/extrapolate
