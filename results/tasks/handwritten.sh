#!/bin/bash
# Train on generated qa1 / qa4 stories (1 segment of 128 positions, MiniLM, CPU), then score on hand-written
# bAbI-format stories and on the generated test set.   results/tasks/handwritten.sh [OUT_DIR]
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1
B=${1:-outputs/handwritten}
mkdir -p "$B"
for spec in qa1:300:qa1 reasoning:400:qa4; do
  IFS=: read task steps file <<< "$spec"
  start=$(date +%s)
  .venv/bin/rmt train task=$task "curriculum.stages=[{segments:1,steps:$steps}]" trainer.eval_every=100 trainer.val_samples=64 hydra.run.dir=$B/train_$task > $B/train_$task.out 2>&1
  echo "$task train rc=$? $(( $(date +%s) - start )) s" >> $B/timeline.txt
  .venv/bin/rmt eval --checkpoint $B/train_$task task.segments=1 --samples 200 hydra.run.dir=$B/eval_generated_$task > $B/eval_generated_$task.out 2>&1
  .venv/bin/rmt eval --checkpoint $B/train_$task task.facts_file=$PWD/tests/fixtures/babi/${file}_handwritten_test.txt task.segments=1 --samples 200 hydra.run.dir=$B/eval_handwritten_$task > $B/eval_handwritten_$task.out 2>&1
  echo "$task evals done $(( $(date +%s) - start )) s" >> $B/timeline.txt
done
