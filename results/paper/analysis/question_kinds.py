"""Reasoning accuracy per seed and length, split by the kind of question, for runs extrapolated before
predictions.csv had its `facts_naming_question` and `last_fact_segment` columns: the test samples are drawn again
from each run's saved config (the same fixed seeds, so the same samples) and joined with its predictions.

    python results/paper/analysis/question_kinds.py results/paper/reasoning \\
        --backbone MINILM_BF16 --noise AUSTEN --segments 1,8,32,512

"one fact": the question's place is named by one fact (find it, give its other place); "both facts": both facts
name it, so the relation's direction decides between two candidates. "same segment" / "apart": where the facts lie.
A second table takes the both-facts questions whose facts all lie before the question's segment (only the memory
brings them) and sorts their answers: right, the other place the facts name, the place asked about, or a place that
no fact names.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from rmt_cli.backbones import load_tokenizer
from rmt_cli.corpus.load import load_noise
from rmt_cli.experiment import check_sizes, task_spec
from rmt_cli.facts import facts_name
from rmt_cli.samples import SampleFactory
from rmt_cli.trained_run import typed_run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task_folder", type=Path, help="results/paper/reasoning: seedN/train_config.yaml and "
                        "seedN/extrapolate_predictions.csv")
    parser.add_argument("--backbone", help="backbone.name_or_path, if not where the run read it")
    parser.add_argument("--noise", help="noise.path, if not where the run read it")
    parser.add_argument("--segments", default="1,8,32,512")
    args = parser.parse_args()

    seeds = sorted(args.task_folder.glob("seed*"))
    values = OmegaConf.to_container(OmegaConf.load(seeds[0] / "train_config.yaml"))
    if args.backbone:
        values["backbone"]["name_or_path"] = args.backbone
    if args.noise:
        values["noise"]["path"] = args.noise
    cfg = typed_run_config("train", values)
    tokenizer = load_tokenizer(cfg.backbone)
    factory = SampleFactory(task_spec(cfg), load_noise(cfg.noise, tokenizer).eval, tokenizer, check_sizes(cfg))
    predictions = {seed.name: list(csv.DictReader((seed / "extrapolate_predictions.csv").open())) for seed in seeds}

    print("| segments | seed | one fact | both facts | same segment | apart |")
    print("| --: | --- | --: | --: | --: | --: |")
    from_memory = []  # table rows: both facts name the question, every fact before its segment
    for n in map(int, args.segments.split(",")):
        samples = None
        for seed, rows in predictions.items():
            rows = [row for row in rows if int(row["segments"]) == n]
            samples = samples or factory.sample_set("test", cfg.task.eval_seed, n, len(rows))
            if [int(row["first_fact_segment"]) for row in rows] != [min(s.fact_segments) for s in samples]:
                raise SystemExit(f"{seed} at {n} segments: the samples drawn again are not the run's")
            kinds = defaultdict(list)
            for row, sample in zip(rows, samples, strict=True):
                right = row["correct"] == "True"
                kinds["both facts" if sample.facts_naming_question > 1 else "one fact"].append(right)
                kinds["same segment" if len(sample.fact_segments) == 1 else "apart"].append(right)
            cells = [f"{sum(kinds[k])}/{len(kinds[k])}" for k in ("one fact", "both facts", "same segment", "apart")]
            print(f"| {n:,} | {seed} | " + " | ".join(cells) + " |")
            answers = defaultdict(int)
            for row, sample in zip(rows, samples, strict=True):
                if sample.facts_naming_question > 1 and max(sample.fact_segments) < n - 1:
                    predicted = row["predicted"]
                    kind = ("right" if row["correct"] == "True" else
                            "asked" if predicted and predicted in re.findall(r"\w+", sample.story.question) else
                            "named" if predicted and facts_name(sample.story, predicted) else "unnamed")
                    answers[kind] += 1
            if answers:
                from_memory.append(f"| {n:,} | {seed} | {sum(answers.values())} | {answers['right']} | "
                                   f"{answers['named']} | {answers['asked']} | {answers['unnamed']} |")
    print("\nBoth facts name the question and lie before its segment: answers\n"
          "| segments | seed | questions | right | the other place the facts name | the place asked about | "
          "a place no fact names |\n| --: | --- | --: | --: | --: | --: | --: |")
    print("\n".join(from_memory))


if __name__ == "__main__":
    main()
