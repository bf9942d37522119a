#!/bin/bash
# CPU check: does trainer.memory_map teach reasoning's memory which way a relation goes, starting from a model that
# already reads the direction within one segment? From the one-segment first stage of ../direction_stage/ (MiniLM,
# 64-position segments), STEPS steps of two segments with every fact before the question's segment, as the plain arm
# of ../associative_memory/ (800 steps, seed 1: 14.3% on direction questions from the memory), with the memory-map
# objective at weight 1; then tested at 2, 4 and 8 segments.
#   FIRST=outputs/direction_stage/first STEPS=400 bash results/cpu_checks/memory_map/run.sh mapped 1
#   FIRST=outputs/direction_stage/first OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh mapped_800_s1 1 &
#   FIRST=outputs/direction_stage/first OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh mapped_800_s2 2
# TARGET=ends asks for the north/east end of the facts' line instead (trainer.memory_map_target=ends):
#   FIRST=outputs/direction_stage/first STEPS=400 TARGET=ends bash results/cpu_checks/memory_map/run.sh ends_400 1
#   FIRST=outputs/memory_map/ends_400 STEPS=800 TARGET=ends bash results/cpu_checks/memory_map/run.sh ends_400_800 2
# then 2-8 segments drawn per sample (SEGMENTS), tested to 32 (LENGTHS):
#   FIRST=outputs/memory_map/ends_400_800 STEPS=400 TARGET=ends SEGMENTS=[2,8] LENGTHS=2,4,8,16,32 \
#     OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh ends_2to8 3
# and 400 more steps of it:
#   FIRST=outputs/memory_map/ends_2to8 STEPS=400 TARGET=ends SEGMENTS=[2,8] LENGTHS=2,4,8,16,32 \
#     OMP_NUM_THREADS=2 bash results/cpu_checks/memory_map/run.sh ends_2to8_more 4
# then 200 steps of 4-16 segments:
#   FIRST=outputs/memory_map/ends_2to8_more STEPS=200 TARGET=ends SEGMENTS=[4,16] LENGTHS=2,4,8,16,32 \
#     OMP_NUM_THREADS=2 bash results/cpu_checks/memory_map/run.sh ends_4to16 5
# then 60 steps of 16-48 segments (STAGE adds stage keys, further arguments are overrides), against 60 more of 4-16:
#   FIRST=outputs/memory_map/ends_4to16 STEPS=60 TARGET=ends SEGMENTS=[16,48] LENGTHS=8,16,32,64,128 \
#     STAGE=,checkpoint_segments:true,lengths_per:batch OMP_NUM_THREADS=1 \
#     bash results/cpu_checks/memory_map/run.sh ends_16to48 6 trainer.reentrant_checkpoints=true &
#   FIRST=outputs/memory_map/ends_4to16 STEPS=60 TARGET=ends SEGMENTS=[4,16] LENGTHS=8,16,32,64,128 \
#     OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh ends_4to16_more 6
# From the one-segment first stage straight to 400 steps of 2-8 segments, facts anywhere (FBQ=false: the GPU preset's
# 2-8 stage, with the map objective) against facts before the question's segment (FBQ=true), one thread each:
#   FIRST=outputs/direction_stage/first STEPS=400 TARGET=ends SEGMENTS=[2,8] LENGTHS=2,4,8,16,32 FBQ=false \
#     OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh first_2to8_anywhere 7 &
#   FIRST=outputs/direction_stage/first STEPS=400 TARGET=ends SEGMENTS=[2,8] LENGTHS=2,4,8,16,32 FBQ=true \
#     OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh first_2to8_before 7
# Two-segment stage first or not, before 1-4 segments drawn per sample with facts anywhere (the GPU preset's next
# stage), at equal steps: ends_400 (400 steps of two segments) + 400 of 1-4, against 800 of 1-4 from the first stage:
#   FIRST=outputs/memory_map/ends_400 STEPS=400 TARGET=ends SEGMENTS=[1,4] LENGTHS=2,4,8 FBQ=false \
#     OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh two_then_1to4 8 &
#   FIRST=outputs/direction_stage/first STEPS=800 TARGET=ends SEGMENTS=[1,4] LENGTHS=2,4,8 FBQ=false \
#     OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh first_1to4 8
# The bf16 working copy against the fp32 weights (first_1to4 above), then 500 steps of 2-8 segments after it, then
# 300 of 4-16 (each segment recomputed, as the card's 4-16 stage):
#   FIRST=outputs/direction_stage/first STEPS=800 TARGET=ends SEGMENTS=[1,4] LENGTHS=2,4,8 FBQ=false \
#     OMP_NUM_THREADS=2 bash results/cpu_checks/memory_map/run.sh first_1to4_bf16 8 trainer.compute_dtype=bf16
#   FIRST=outputs/memory_map/first_1to4_bf16 STEPS=500 TARGET=ends SEGMENTS=[2,8] LENGTHS=2,4,8,16,32 FBQ=false \
#     OMP_NUM_THREADS=2 bash results/cpu_checks/memory_map/run.sh first_1to4_bf16_2to8 9 trainer.compute_dtype=bf16
#   FIRST=outputs/memory_map/first_1to4_bf16_2to8 STEPS=300 TARGET=ends SEGMENTS=[4,16] LENGTHS=2,4,8,16,32 \
#     FBQ=false STAGE=,checkpoint_segments:true OMP_NUM_THREADS=2 bash results/cpu_checks/memory_map/run.sh \
#     first_1to4_bf16_4to16 10 trainer.compute_dtype=bf16 trainer.reentrant_checkpoints=true
#   rmt extrapolate --checkpoint outputs/memory_map/first_1to4_bf16_4to16 --segments 64,128 --samples 200 \
#     segment.length=64 hydra.run.dir=outputs/memory_map/first_1to4_bf16_4to16/extrapolate_long
# then 60 steps of 16-48 segments after that:
#   FIRST=outputs/memory_map/first_1to4_bf16_4to16 STEPS=60 TARGET=ends SEGMENTS=[16,48] LENGTHS=32,64,128 FBQ=false \
#     STAGE=,checkpoint_segments:true,lengths_per:batch OMP_NUM_THREADS=2 bash results/cpu_checks/memory_map/run.sh \
#     first_1to4_bf16_16to48 11 trainer.compute_dtype=bf16 trainer.reentrant_checkpoints=true
# and the same 16-48 stage without the map objective (MAP=0), which separates the stage from the map layer that
# every trainer.init_from run starts afresh:
#   FIRST=outputs/memory_map/first_1to4_bf16_4to16 STEPS=60 TARGET=ends SEGMENTS=[16,48] LENGTHS=32,64,128 FBQ=false \
#     STAGE=,checkpoint_segments:true,lengths_per:batch MAP=0 OMP_NUM_THREADS=2 bash results/cpu_checks/memory_map/run.sh \
#     first_1to4_bf16_16to48_nomap 11 trainer.compute_dtype=bf16 trainer.reentrant_checkpoints=true
# and that at lr 1e-5 (the stage's own lr):
#   FIRST=outputs/memory_map/first_1to4_bf16_4to16 STEPS=60 TARGET=ends SEGMENTS=[16,48] LENGTHS=32,64,128 FBQ=false \
#     STAGE=,checkpoint_segments:true,lengths_per:batch,lr:1.0e-5 MAP=0 OMP_NUM_THREADS=2 \
#     bash results/cpu_checks/memory_map/run.sh first_1to4_bf16_16to48_nomap_lr1e5 11 trainer.compute_dtype=bf16 \
#     trainer.reentrant_checkpoints=true
# with the map objective on (the same without MAP=0: first_1to4_bf16_16to48_lr1e5, seed 11), then 60 more steps of it:
#   FIRST=outputs/memory_map/first_1to4_bf16_16to48_lr1e5 STEPS=60 TARGET=ends SEGMENTS=[16,48] LENGTHS=32,64,128 \
#     FBQ=false STAGE=,checkpoint_segments:true,lengths_per:batch,lr:1.0e-5 OMP_NUM_THREADS=2 \
#     bash results/cpu_checks/memory_map/run.sh first_1to4_bf16_16to48_lr1e5_more 12 trainer.compute_dtype=bf16 \
#     trainer.reentrant_checkpoints=true
# then 40 steps of 32-96 segments at 1e-5 and, apart, at 2.5e-6:
#   FIRST=outputs/memory_map/first_1to4_bf16_16to48_lr1e5_more STEPS=40 TARGET=ends SEGMENTS=[32,96] \
#     LENGTHS=64,128,256 FBQ=false STAGE=,checkpoint_segments:true,lengths_per:batch,lr:1.0e-5 OMP_NUM_THREADS=2 \
#     bash results/cpu_checks/memory_map/run.sh first_1to4_bf16_32to96_lr1e5 13 trainer.compute_dtype=bf16 \
#     trainer.reentrant_checkpoints=true
#   (the same with lr:2.5e-6: first_1to4_bf16_32to96_lr2e6)
# The chain rebuilt from scratch on two threads (rerun_chain/: `OMP_NUM_THREADS=2 bash
# results/cpu_checks/direction_stage/run.sh first`, then first_1to4_bf16 and first_1to4_bf16_2to8 as above, their
# training only), then 100 steps of 4-16 segments with every fact before the question's segment (FBQ=true) against
# facts anywhere (FBQ=false), side by side on one thread each:
#   FIRST=outputs/memory_map/first_1to4_bf16_2to8 STEPS=100 TARGET=ends SEGMENTS=[4,16] LENGTHS=32,128 FBQ=true \
#     STAGE=,checkpoint_segments:true OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh \
#     first_1to4_bf16_4to16_100_fbq_true 10 trainer.compute_dtype=bf16 trainer.reentrant_checkpoints=true &
#   (the same with FBQ=false: first_1to4_bf16_4to16_100_fbq_false)
# The 2-8 stage's rate, 300 steps at the preset's 5e-5 and at 1e-4, from the 1-4 stage rebuilt (first_1to4_bf16):
#   FIRST=outputs/memory_map/first_1to4_bf16 STEPS=300 TARGET=ends SEGMENTS=[2,8] LENGTHS=2,4,8,16 FBQ=false \
#     OMP_NUM_THREADS=1 bash results/cpu_checks/memory_map/run.sh first_1to4_bf16_2to8_300_lr5.0e-5 9 \
#     trainer.compute_dtype=bf16 trainer.lr=5.0e-5 &   # and the same with 1.0e-4
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-outputs/memory_map}
arm=${1:?arm name} seed=${2:?seed}
rmt train experiment=paper_minilm_reasoning seed=$seed trainer.device=cpu trainer.init_from=${FIRST:?} \
  trainer.memory_map=${MAP:-1.0} trainer.memory_map_target=${TARGET:-relations} \
  "curriculum.stages=[{segments:${SEGMENTS:-2},steps:${STEPS:-800},segment_length:64,eval_every:100,facts_before_question:${FBQ:-true}${STAGE:-}}]" \
  hydra.run.dir=$out/$arm "${@:3}"
rmt extrapolate --checkpoint $out/$arm --segments ${LENGTHS:-2,4,8} --samples 200 segment.length=64 \
  hydra.run.dir=$out/$arm/extrapolate
