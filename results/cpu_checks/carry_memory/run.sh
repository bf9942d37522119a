#!/bin/bash
# CPU check of a stage's carry_memory on detect (the CPU default's 128-position segments, MiniLM, Austen noise):
# train with SHARE (0.0 or 0.5) in the last stage, then extrapolate. One thread each, so two shares run side by side
# on a 2-core machine:   bash results/cpu_checks/carry_memory/run.sh 0.0 & bash results/cpu_checks/carry_memory/run.sh 0.5
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
share=$1
out=${OUT:-outputs/carry_memory}/carry$share
rmt train task=detect curriculum.advance_at=null \
  "curriculum.stages=[{segments:1,steps:150},{segments:2,steps:100},{segments:[2,6],steps:200,val_segments:16,carry_memory:$share}]" \
  hydra.run.dir=$out/train
rmt extrapolate --checkpoint $out/train --segments 4,16,64,256 --samples 100 hydra.run.dir=$out/extrapolate
