#!/bin/bash
# CPU check of noise.generated_training_tokens on detect: can a memory trained on little noise text learn that text
# instead of learning to ignore text, and does training noise generated from it close the gap? Training noise: the
# first 280 kB of Emma (65,498 MiniLM tokens, read about 40 times over by these 550 steps); validation and test
# noise: Persuasion. Then tested at 16 and 64 segments on Persuasion (held out) and on the Emma text it trained on.
# TOKENS: generated tokens added to the training noise (0, or 200000: three generated tokens per real one, as in the
# GPU try). One thread each (THREADS=1), so both run side by side on a 2-core machine:
#   bash results/cpu_checks/generated_noise/run.sh 0 & bash results/cpu_checks/generated_noise/run.sh 200000
# LAST_SHARE=q: generated noise in the last stage only, as that share of its windows (curriculum.generated_share=0).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}
tokens=$1
data=${DATA:-outputs/generated_noise/data}
out=${OUT:-outputs/generated_noise}/generated$tokens${LAST_SHARE:+_last$LAST_SHARE}
austen=${RMT_DATA_DIR:-$HOME/.cache/rmt/corpora}/austen
mkdir -p "$data/noise" "$data/training_text"
head -c 280000 "$austen/emma.txt" > "$data/noise/a_emma_start.txt"
cp "$austen/persuasion.txt" "$data/noise/b_persuasion.txt"  # the last document in sorted order: held out
# the same Emma text as the held-out document of a second corpus, to test on the noise the model trained on
cp "$austen/sensesensibility.txt" "$data/training_text/a_other.txt"
cp "$data/noise/a_emma_start.txt" "$data/training_text/b_emma_start.txt"
rmt train task=detect curriculum.advance_at=null noise=files "noise.paths=[$data/noise]" noise.eval_fraction=0.6 \
  noise.generated_training_tokens=$tokens ${LAST_SHARE:+curriculum.generated_share=0} \
  "curriculum.stages=[{segments:1,steps:150},{segments:2,steps:100},{segments:[2,6],steps:300,val_segments:16${LAST_SHARE:+,generated_share:$LAST_SHARE}}]" \
  hydra.run.dir=$out/train
rmt extrapolate --checkpoint $out/train --segments 16,64 --samples 100 hydra.run.dir=$out/held_out
rmt extrapolate --checkpoint $out/train --segments 16,64 --samples 100 noise=files "noise.paths=[$data/training_text]" \
  noise.eval_fraction=0.3 hydra.run.dir=$out/training_text
