#!/bin/bash
# CPU check of a stage's chain_share on detect (the CPU default's 128-position segments, MiniLM, Austen noise): the
# same command as results/cpu_checks/carry_memory/run.sh (whose share 0.0 run is the baseline), with half of the last
# stage's rows reading chains of up to 16 inputs of 2-6 segments, then extrapolated. One thread.
#   bash results/cpu_checks/chains/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:-outputs/chains}/chain0.5
rmt train task=detect curriculum.advance_at=null \
  "curriculum.stages=[{segments:1,steps:150},{segments:2,steps:100},{segments:[2,6],steps:200,val_segments:16,chain_share:0.5,chain_steps:16}]" \
  hydra.run.dir=$out/train
rmt extrapolate --checkpoint $out/train --segments 4,16,64,256 --samples 100 hydra.run.dir=$out/extrapolate
