#!/bin/bash
# CPU check of a stage's growing chains (chain_steps: [lo, hi]) on detect: the command of
# results/cpu_checks/chains/run.sh (same seed, data and stages) with the longest chain growing from 2 to 16 steps
# over the last stage instead of 16 from its start, then extrapolated. One thread.
#   bash results/cpu_checks/chains_growing/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:-outputs/chains}/chain0.5_grow2-16
rmt train task=detect curriculum.advance_at=null \
  "curriculum.stages=[{segments:1,steps:150},{segments:2,steps:100},{segments:[2,6],steps:200,val_segments:16,chain_share:0.5,chain_steps:[2,16]}]" \
  hydra.run.dir=$out/train
rmt extrapolate --checkpoint $out/train --segments 4,16,64,256 --samples 100 hydra.run.dir=$out/extrapolate
