#!/usr/bin/env bash
# Reproduces results/paper on one GPU: trains the three MiniLM presets side by side on the same card; as soon as a
# task's training ends, extrapolates it to 4096 segments (2,043,904 content tokens) on 200 fixed test samples per
# length; evaluates every curriculum stage of memorize on 1..15 segments (the paper's Figure 5).
#   results/paper/run.sh OUT_DIR [OVERRIDES...]   MINILM_PATH=/folder/of/minilm  (default: the offline package)
#   TASKS="memorize detect reasoning"     which tasks to run; OVERRIDES go to every `rmt train`
#   TRAIN_MINUTES=14 MEMORIZE_MINUTES=4    time budgets of the training runs
#   PRESET=minilm                         presets experiment=PRESET_TASK (minilm or minilm_long)
set -uo pipefail
OUT=${1:-outputs/paper}
shift || true
OVERRIDES=("$@")
mkdir -p "$OUT"
RMT="python -m rmt_cli"
BACKBONE=()
if [ -n "${MINILM_PATH:-}" ]; then BACKBONE=("backbone.name_or_path=$MINILM_PATH"); fi
stamp() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/timeline.txt"; }

pipeline() {
  local task=$1 minutes=$2
  stamp "start train $task"
  $RMT train experiment=${PRESET:-minilm}_$task seed=0 "${BACKBONE[@]}" trainer.time_limit_minutes=$minutes "${OVERRIDES[@]}" \
      hydra.run.dir="$OUT/train_$task" > "$OUT/train_$task.out" 2>&1
  stamp "end train $task rc=$?"
  $RMT extrapolate --checkpoint "$OUT/train_$task" --max-segments 4096 --samples 200 --batch-size 200 \
      hydra.run.dir="$OUT/extrapolate_$task" > "$OUT/extrapolate_$task.out" 2>&1
  stamp "end extrapolate $task rc=$?"
  if [ "$task" = memorize ]; then
    for checkpoint in "$OUT"/train_memorize/checkpoints/stage*-best; do
      name=$(basename "$checkpoint")
      $RMT extrapolate --checkpoint "$checkpoint" --segments 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 --samples 200 \
          hydra.run.dir="$OUT/fig5/$name" > "$OUT/fig5_$name.out" 2>&1
    done
    stamp "end fig5 rc=$?"
  fi
}

for task in ${TASKS:-memorize detect reasoning}; do
  minutes=${TRAIN_MINUTES:-14}
  [ "$task" = memorize ] && minutes=${MEMORIZE_MINUTES:-4}
  pipeline "$task" "$minutes" &
done
wait
stamp "all done"
