#!/bin/bash
# The CPU checks of results/cpu_checks/retention/ (README there). Each step one command; MINILM and Austen come from
# `rmt download` (the default install). Threads: one per process, two processes side by side on a 2-core machine.
#   bash results/cpu_checks/retention/run.sh base                  # stages 1, 2, 4 short segments, seed 0 (~5 min)
#   (arguments after `base` go to its `rmt train`, as section 10's memory.size=20 with its own OUT)
#   bash results/cpu_checks/retention/run.sh arm plain 0 ''        # then, side by side:
#   bash results/cpu_checks/retention/run.sh arm primed 0 ',noise_primed:0.5,primed_segments:8'
# (seed 1: the same two arm lines with 1 instead of 0). OUT (default outputs/retention_check) holds the runs.
# Arguments after the fourth go to the arm's `rmt train` (e.g. trainer.time_limit_minutes=12.5); SEGMENTS and STEPS
# (default [4,8] and 150) set the arm's segment counts and steps (section 9: SEGMENTS=[16,32] STEPS=50).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-outputs/retention_check}
common=(experiment=paper_minilm_detect noise=austen trainer.lr=1.0e-4 trainer.batch_size=16 trainer.eval_batch_size=64
        trainer.val_samples=64 trainer.eval_every=25)
if [ "$1" = base ]; then
  OMP_NUM_THREADS=2 rmt train "${common[@]}" seed=0 hydra.run.dir=$out/base \
    'curriculum.stages=[{segments:1,steps:600,segment_length:64,advance_at:0.95},{segments:2,steps:300,segment_length:64,advance_at:0.95},{segments:4,steps:300,segment_length:64,advance_at:0.95}]' \
    "${@:2}"
  exit
fi
name=$2 seed=$3 extra=$4
shift 4  # any further arguments: overrides of the arm's training run (section 8: trainer.time_limit_minutes=...)
export OMP_NUM_THREADS=1
rmt train "${common[@]}" seed=$seed trainer.init_from=$out/base hydra.run.dir=$out/$name \
  "curriculum.stages=[{segments:${SEGMENTS:-[4,8]},steps:${STEPS:-150},segment_length:64,val_segments:32$extra}]" "$@"
rmt retention --checkpoint $out/$name --max-segments 512 --probes 20 --samples 64 --batch-size 64 segment.length=64 \
  hydra.run.dir=$out/$name/retention_512
