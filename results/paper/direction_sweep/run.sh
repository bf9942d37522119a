#!/bin/bash
# Which two-segment stage teaches reasoning's memory the direction of a relation? A sweep on one GPU, every arm a
# separate `rmt train` sharing the card (MiniLM, `paper_minilm_reasoning`, Austen noise, segments of 64 positions).
#   bash results/paper/direction_sweep/run.sh short     # first stages, then ten arms of 3,000 steps, then the tests
#   STEPS=8000 bash results/paper/direction_sweep/run.sh long   # the same first stages, six arms of 8,000 steps
#   STEPS=5000 bash results/paper/direction_sweep/run.sh scratch  # no first stage: six arms from the pretrained backbone
#   STEPS=2500 bash results/paper/direction_sweep/run.sh layers   # memory at every layer (memory.every_layer), from the
#                                                                 # pretrained backbone, beside one plain-memory arm
#   STEPS=2500 bash results/paper/direction_sweep/run.sh associative  # a key-value matrix per block (memory.associative)
#   STEPS=2500 bash results/paper/direction_sweep/run.sh mapped  # trainer.memory_map: a linear layer asks the memory
#                                                                # for every relation after every segment
#   bash results/paper/direction_sweep/run.sh mapped_first  # from the first stages of seeds 0 and 1: the map read
#       # linearly (trainer.memory_map) or through a hidden layer (trainer.memory_map_hidden=512), or the memory asked
#       # for the north/east end of its facts' line (trainer.memory_map_target=ends), beside the plain stage
#   SMOLLM=/path/to/folder/with/gguf STEPS=2500 bash results/paper/direction_sweep/run.sh decoder
#       # the decoder layout (SmolLM2-135M, memory written after the whole segment), classify head, from the
#       # pretrained backbone; SMOLLM names the folder holding the preset's GGUF file
# RMT (default `rmt`) runs the tool, MINILM names a local copy of the backbone, OUT_DIR the output folder, STEPS the
# steps of each two-segment stage. Each arm starts from a first stage (one segment, lr 1e-4, leaving at 98%) of its
# seed, trains STEPS steps on two segments, and is tested at 2, 4, 8 and 16 segments on the fixed test sets
# (extrapolation.json: accuracy_several_facts_before_question is the direction read from the memory).
set -uo pipefail
cd "$(dirname "$0")/../../.."
RMT=${RMT:-rmt}
out=${OUT_DIR:-outputs/direction_sweep}
steps=${STEPS:-3000}
backbone=${MINILM:+backbone.name_or_path=$MINILM}
# the preset as these arms ran it, before it asked the memory for its facts' north/east end; an arm's own
# trainer.memory_map settings come later on its command line and win
unmapped="trainer.memory_map=0 trainer.memory_map_target=relations"
mkdir -p "$out"

first() {  # seed [extra overrides...]
  local seed=$1; shift
  $RMT train experiment=paper_minilm_reasoning seed="$seed" $backbone $unmapped "$@" \
    'curriculum.stages=[{segments:1,steps:1500,lr:1.0e-4,advance_at:0.98,segment_length:64,eval_every:100}]' \
    hydra.run.dir="$out/first$seed${TAG:-}" > "$out/first$seed${TAG:-}.out" 2>&1
}

arm() {  # name seed lr stage-settings [extra overrides...]; SEGMENTS (default 2) and FROM (default: the first stage)
  local name=$1 seed=$2 lr=$3 mix=$4; shift 4
  $RMT train experiment=paper_minilm_reasoning seed="$seed" $backbone $unmapped "$@" \
    ${FROM-trainer.init_from=$out/first$seed${TAG:-}} \
    "curriculum.stages=[{segments:${SEGMENTS:-2},steps:$steps,lr:$lr,segment_length:64,eval_every:250$mix}]" \
    hydra.run.dir="$out/$name" > "$out/$name.out" 2>&1
  $RMT extrapolate --checkpoint "$out/$name" --segments 2,4,8,16 --samples 200 segment.length=64 $backbone \
    hydra.run.dir="$out/$name/extrapolate" > "$out/$name.extrapolate.out" 2>&1
}

fbq=",facts_before_question:true"
sweep=${1:?short, long, scratch, layers, associative, mapped, mapped_first or decoder}
if [ "$sweep" = short ]; then
  first 0 & first 1 & TAG=_mem20 first 0 memory.size=20 & wait
  arm plain_5e-5_s0 0 5.0e-5 "" &
  arm plain_1e-4_s0 0 1.0e-4 "" &
  arm fbq_1e-4_s0 0 1.0e-4 "$fbq" &
  arm fbq_mfs05_1e-4_s0 0 1.0e-4 "$fbq,multi_fact_share:0.5" &
  arm direction_1e-4_s0 0 1.0e-4 "$fbq,multi_fact_share:1.0" &
  arm fbq_2e-4_s0 0 2.0e-4 "$fbq" &
  arm plain_1e-4_s1 1 1.0e-4 "" &
  arm fbq_1e-4_s1 1 1.0e-4 "$fbq" &
  arm fbq_mfs05_1e-4_s1 1 1.0e-4 "$fbq,multi_fact_share:0.5" &
  TAG=_mem20 arm fbq_1e-4_mem20_s0 0 1.0e-4 "$fbq" memory.size=20 &
elif [ "$sweep" = scratch ]; then  # no one-segment stage: the relations learnt locally and through the memory at once
  FROM= SEGMENTS=[1,2] arm scratch_1to2_s0 0 1.0e-4 "" &
  FROM= SEGMENTS=[1,2] arm scratch_1to2_s1 1 1.0e-4 "" &
  FROM= SEGMENTS=[1,2] arm scratch_1to2_mfs05_s0 0 1.0e-4 ",multi_fact_share:0.5" &
  FROM= SEGMENTS=2 arm scratch_2_s0 0 1.0e-4 "" &
  FROM= SEGMENTS=2 arm scratch_2_s1 1 1.0e-4 "" &
  FROM= SEGMENTS=2 arm scratch_2_fbq_mfs05_s0 0 1.0e-4 "$fbq,multi_fact_share:0.5" &
elif [ "$sweep" = associative ]; then  # memory.associative=true: keys bound to values, per block
  associative="memory.associative=true"
  FROM= SEGMENTS=[1,2] arm associative_1to2_mfs05_s0 0 1.0e-4 ",multi_fact_share:0.5" $associative &
  FROM= SEGMENTS=[1,2] arm associative_1to2_mfs05_s1 1 1.0e-4 ",multi_fact_share:0.5" $associative &
  FROM= SEGMENTS=[1,2] arm associative_1to2_mfs05_lr10_s0 0 1.0e-4 ",multi_fact_share:0.5" $associative \
    trainer.memory_lr_scale=10 &
  FROM= SEGMENTS=2 arm associative_2_fbq_mfs05_s0 0 1.0e-4 "$fbq,multi_fact_share:0.5" $associative &
  FROM= SEGMENTS=2 arm associative_2_s0 0 1.0e-4 "" $associative &
elif [ "$sweep" = mapped ]; then  # trainer.memory_map: the memory asked for every relation after every segment
  mapped="trainer.memory_map=1.0"
  FROM= SEGMENTS=[1,2] arm mapped_1to2_mfs05_s0 0 1.0e-4 ",multi_fact_share:0.5" $mapped &
  FROM= SEGMENTS=[1,2] arm mapped_1to2_mfs05_s1 1 1.0e-4 ",multi_fact_share:0.5" $mapped &
  FROM= SEGMENTS=[1,2] arm mapped_w0.1_1to2_mfs05_s0 0 1.0e-4 ",multi_fact_share:0.5" trainer.memory_map=0.1 &
  FROM= SEGMENTS=2 arm mapped_2_fbq_mfs05_s0 0 1.0e-4 "$fbq,multi_fact_share:0.5" $mapped &
  FROM= SEGMENTS=2 arm mapped_2_s0 0 1.0e-4 "" $mapped &
elif [ "$sweep" = mapped_first ]; then  # trainer.memory_map from the first stages (which read the direction in context):
  first 0 & first 1 & wait                  # the whole map read linearly or through a hidden layer, or the north/east end
  for seed in 0 1; do
    arm mapped_first_fbq_s$seed $seed 1.0e-4 "$fbq" trainer.memory_map=1.0 &
    arm mapped_hidden_first_fbq_s$seed $seed 1.0e-4 "$fbq" trainer.memory_map=1.0 trainer.memory_map_hidden=512 &
    arm ends_first_fbq_s$seed $seed 1.0e-4 "$fbq" trainer.memory_map=1.0 trainer.memory_map_target=ends &
    arm first_fbq_s$seed $seed 1.0e-4 "$fbq" &  # the same stage without the map, beside them
  done
elif [ "$sweep" = decoder ]; then  # SmolLM2-135M: the memory read first, written after the whole segment in order
  backbone="backbone.name_or_path=${SMOLLM:?the folder holding SmolLM2-135M-Instruct.Q4_1.gguf}"
  decoder="backbone=smollm2-135m task.head=classify"
  FROM= SEGMENTS=[1,2] arm decoder_1to2_mfs05_s0 0 1.0e-4 ",multi_fact_share:0.5" $decoder &
  FROM= SEGMENTS=[1,2] arm decoder_1to2_mfs05_s1 1 1.0e-4 ",multi_fact_share:0.5" $decoder &
  FROM= SEGMENTS=2 arm decoder_2_fbq_mfs05_s0 0 1.0e-4 "$fbq,multi_fact_share:0.5" $decoder &
  FROM= SEGMENTS=2 arm decoder_2_s0 0 1.0e-4 "" $decoder &
elif [ "$sweep" = layers ]; then  # memory.every_layer=true: each block reads what it wrote in the segment before
  layers="memory.every_layer=true"
  FROM= SEGMENTS=[1,2] arm layers_1to2_mfs05_s0 0 1.0e-4 ",multi_fact_share:0.5" $layers &
  FROM= SEGMENTS=[1,2] arm layers_1to2_mfs05_s1 1 1.0e-4 ",multi_fact_share:0.5" $layers &
  FROM= SEGMENTS=2 arm layers_2_fbq_mfs05_s0 0 1.0e-4 "$fbq,multi_fact_share:0.5" $layers &
  FROM= SEGMENTS=2 arm layers_2_s0 0 1.0e-4 "" $layers &
  FROM= SEGMENTS=[1,2] arm plain_1to2_mfs05_s0 0 1.0e-4 ",multi_fact_share:0.5" &
else  # long: the same first stages of seeds 0 and 1, then fewer arms with STEPS steps each
  first 0 & first 1 & wait
  arm long_plain_1e-4_s0 0 1.0e-4 "" &
  arm long_fbq_mfs05_1e-4_s0 0 1.0e-4 "$fbq,multi_fact_share:0.5" &
  arm long_fbq_mfs05_1e-4_s1 1 1.0e-4 "$fbq,multi_fact_share:0.5" &
  arm long_fbq_mfs05_2e-4_s0 0 2.0e-4 "$fbq,multi_fact_share:0.5" &
  arm long_fbq_1e-4_s1 1 1.0e-4 "$fbq" &
  arm long_direction_2e-4_s1 1 2.0e-4 "$fbq,multi_fact_share:1.0" &
fi
wait
echo "sweep ended $(date -u +%T)"
