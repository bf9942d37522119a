"""`rmt reproduce summarize`: a run folder of `rmt reproduce run` as mean, min and max over seeds of every length,
from the run folders alone: summary.json, the accuracy-against-length plot, each seed's files beside them, and the
Markdown table of the README."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from statistics import mean

from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.metrics import last_line, readable_lines
from rmt_cli.reproduce import PLAN, seed_folder

RUN_KEYS = ("preset", "card", "command", "samples", "started")  # what identifies one run of the protocol
# Parts of the test samples summarised per length beside the whole (summary key: extrapolation.json column)
BREAKDOWN = {"several_facts_name_question": "accuracy_several_facts_name_question",
             "several_facts_before_question": "accuracy_several_facts_before_question",
             **{f"fact_in_q{quarter}": f"accuracy_fact_in_q{quarter}" for quarter in (1, 2, 3, 4)}}
BY_ANSWER = "accuracy_answer_"  # + a label (extrapolate.BY_ANSWER): accuracy per right answer, kept as answer_LABEL
# The paper's Figure 1 (bert-base, accuracy % at 32 / 512 / 4096 segments), drawn beside ours for reference.
PAPER = {"memorize": {32: 99.2, 512: 93.2, 4096: 90.6}, "detect": {32: 99.8, 512: 98.6, 4096: 96.1},
         "reasoning": {32: 91.6, 512: 84.8, 4096: 81.9}}
# Per-seed files copied next to the summary: small, and enough to rerun or re-plot any seed.
KEPT_FILES = {"train": ("config.yaml", "metrics.jsonl", "train.out"),
              "extrapolate": ("extrapolation.csv", "extrapolation.json", "predictions.csv")}


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RuntimeFailure(f"{what}: {path} is missing") from None
    except json.JSONDecodeError as error:
        raise RuntimeFailure(f"{what}: {path} is not valid JSON ({error.msg})") from None


def seed_result(folder: Path, task: str, seed: int) -> dict:
    """One seed's accuracy per length, training wall time and whether its curriculum ran to the end."""
    what = f"{task} seed {seed}"
    train = read_json(folder / "train.status.json", f"{what} has no finished training")
    if train["exit_code"] != 0:
        raise RuntimeFailure(f"{what}: training exited with {train['exit_code']}; see {folder / 'train.out'}")
    rows = read_json(folder / "extrapolate" / "extrapolation.json", f"{what} was not extrapolated")
    parts = {**BREAKDOWN, **{column.replace("accuracy_", "", 1): column for row in rows for column in row
                             if column.startswith(BY_ANSWER)}}
    return {"accuracy": {int(row["segments"]): 100 * row["accuracy"] for row in rows},
            "breakdown": {key: {int(row["segments"]): 100 * row[column] for row in rows
                                if row.get(column) is not None} for key, column in parts.items()},
            "tokens": {int(row["segments"]): int(row["tokens"]) for row in rows},
            "samples": {int(row["segments"]): int(row["samples"]) for row in rows},
            "train_seconds": train["seconds"], "completed": curriculum_completed(folder / "train"),
            "reverts": reverts(readable_lines(folder / "train" / "metrics.jsonl"))}


def reverts(lines: list[dict]) -> list[dict]:
    """Where trainer.revert_drop sent a run's weights back to its stage's best, from its metrics.jsonl lines: stage,
    step, the validation that fell and that best."""
    return [{key: line[key] for key in ("stage", "step", "val_accuracy", "best_val_accuracy")}
            for line in lines if line.get("kind") == "revert"]


def breakdown(results: dict, n: int) -> dict:
    """Per seed, the accuracy on a part of the test samples (BREAKDOWN: questions several facts name, where
    reasoning's relation direction decides; facts in each quarter of the input, which tells a memory that loses facts
    from one that stops taking them in; and each right answer, answer_LABEL), for each part every seed's rows have
    at this length."""
    parts = {}
    for key in next(iter(results.values()))["breakdown"]:
        if all(n in r["breakdown"].get(key, {}) for r in results.values()):
            per_seed = {str(s): round(r["breakdown"][key][n], 2) for s, r in results.items()}
            parts[key] = {"mean": round(mean(per_seed.values()), 2), "per_seed": per_seed}
    return parts


def saved_curriculum(train: Path):
    """The curriculum (typed) of the config.yaml a training run saved; None before it saved one, or if unreadable."""
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    from rmt_cli.schema import CurriculumConfig, typed_node

    try:
        return typed_node(CurriculumConfig, yaml.safe_load((train / "config.yaml").read_text())["curriculum"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError, OmegaConfBaseException):
        return None


def curriculum_completed(train: Path) -> bool:
    """Whether every stage of the run's curriculum ran to its end (or left early at its advance_at).

    Read from the stages in config.yaml and the validation lines in metrics.jsonl, so that a run stopped by a time
    limit counts as incomplete whatever its own summary line says. A last stage that `trainer.fit_time_limit` cut
    ends at the step its latest `fit` line names: its schedule came down to zero there.
    """
    from rmt_cli.curriculum import setting

    curriculum = saved_curriculum(train)
    if curriculum is None:
        return False
    lines = readable_lines(train / "metrics.jsonl")  # damaged: no validation line, so not completed
    last = len(curriculum.stages)
    stage = curriculum.stages[-1]
    steps, advance_at = stage.steps, setting(stage, "advance_at", curriculum.advance_at)
    fit = last_line(lines, "fit")
    if fit is not None and fit["stage"] == last:
        steps = fit["steps"]
    return any(line.get("kind") == "val" and line["stage"] == last and
               (line["step"] == steps or (advance_at is not None and line["val_accuracy"] >= advance_at))
               for line in lines)


# `rmt extrapolate` overrides that leave the test the protocol's: which run, how many samples at which lengths, the
# batch, where the backbone's weights are read from, where the rows go. Any other (other noise, other facts) makes
# another test, whose rows are kept apart from the protocol's (`other_tests`).
SAME_TEST_KEYS = {"checkpoint", "samples", "batch_size", "segments", "max_segments"}
SAME_TEST_GROUPS = {"backbone", "hydra"}


def changed_test_overrides(extrapolation: Path) -> list[str]:
    """The overrides an extrapolation folder was run with (its .hydra/overrides.yaml) that change its test from the
    protocol's; none when it saved none."""
    import yaml

    try:
        overrides = yaml.safe_load((extrapolation / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return []
    changes = []
    for item in overrides:
        key = str(item).split("=", 1)[0].lstrip("+~")
        if key not in SAME_TEST_KEYS and key.split(".", 1)[0] not in SAME_TEST_GROUPS:
            changes.append(str(item))
    return changes


def extra_rows(out: Path, task: str, seeds: list[int]) -> tuple[list[dict], list[dict]]:
    """The rows of each seed's extra extrapolations (OUT/TASK/seedN/extrapolate_NAME/), never mixed into the means:
    (single_seed, other_tests). single_seed: lengths measured on one seed only on the protocol's test (e.g. 20,480
    segments); other_tests: extrapolations whose overrides changed the test itself (e.g. `noise.eval_documents=...`),
    each row with those `overrides` and its folder's `name`.

    Such an extrapolation reads the seed's own checkpoint (`rmt reproduce run --beyond`) unless a training run
    `train_NAME/` lies beside it: the same preset and seed trained again on its own (when the protocol's checkpoints
    are gone), which its rows say with `trained_again` and that training's wall time.
    """
    single_seed: list[dict] = []
    other_tests: list[dict] = []
    for seed in seeds:
        folder = seed_folder(out, task, seed)
        for path in sorted(folder.glob("extrapolate_*/extrapolation.json")):
            name = path.parent.name.removeprefix("extrapolate_")
            changes = changed_test_overrides(path.parent)
            extra: dict[str, object] = {"name": name, "overrides": changes} if changes else {}
            if (folder / f"train_{name}").is_dir():
                status = read_json(folder / f"train_{name}.status.json", f"{task} seed {seed} trained again")
                extra.update(trained_again=True, train_seconds=status["seconds"])
            (other_tests if changes else single_seed).extend(
                {"seed": seed, "segments": int(row["segments"]), "tokens": int(row["tokens"]),
                 "samples": int(row["samples"]), "accuracy": round(100 * row["accuracy"], 2), **extra}
                for row in read_json(path, f"{task} seed {seed}"))
    return single_seed, other_tests


# Overrides that say where a machine keeps its files, not what is trained or tested: runs of one protocol on
# several machines may differ in them.
PLACE_KEYS = ("backbone.name_or_path", "noise.path")


def recipe_overrides(plan: dict) -> list[str]:
    return [item for item in plan.get("overrides", []) if item.split("=", 1)[0].lstrip("+~") not in PLACE_KEYS]


def read_runs(outs: list[Path]) -> list[tuple[Path, dict]]:
    """Each run folder with its plan; several must be runs of one protocol (the same presets, overrides but for
    file locations, lengths and test samples), e.g. one seed per job or per machine."""
    runs = [(out, read_json(out / PLAN, f"{out} is not a folder of `rmt reproduce run`")) for out in outs]
    first_out, first = runs[0]
    for out, plan in runs[1:]:
        for key in ("preset", "segments", "samples"):
            if plan[key] != first[key]:
                raise UsageError(f"{out} and {first_out} are not runs of one protocol: {key} {plan[key]} against "
                                 f"{first[key]}")
        if recipe_overrides(plan) != recipe_overrides(first):
            differ = sorted(set(recipe_overrides(plan)) ^ set(recipe_overrides(first))) or ["their order"]
            raise UsageError(f"{out} and {first_out} are not runs of one protocol: their overrides differ "
                             f"({'; '.join(differ)})")
    return runs


def task_seeds(runs: list[tuple[Path, dict]], task: str) -> dict[int, Path]:
    """The seeds of `task` over all runs, each with the run folder that trained it. A seed trained in two runs is
    refused: choosing between its results would be a best-of."""
    folders: dict[int, Path] = {}
    for out, plan in runs:
        if task not in plan["tasks"]:
            continue
        for seed in plan["seeds"]:
            if seed in folders:
                raise UsageError(f"{task} seed {seed} was trained in both {folders[seed]} and {out}: a summary "
                                 "takes each seed once (summarise the two runs apart to compare them)")
            folders[seed] = out
    return dict(sorted(folders.items()))


def run_record(plan: dict) -> dict:
    return {key: plan[key] for key in RUN_KEYS}


def summarize(runs: list[tuple[Path, dict]], tasks: list[str] | None = None) -> dict:
    """The runs' tasks (runs as read_runs gives them), or only `tasks` of them, summarised over the seeds of every
    run."""
    first = runs[0][1]
    trained = list(dict.fromkeys(task for _, plan in runs for task in plan["tasks"]))
    unknown = sorted(set(tasks or []) - set(trained))
    if unknown:
        where = runs[0][0] if len(runs) == 1 else "these runs"
        raise UsageError(f"--tasks {','.join(unknown)}: {where} trained {', '.join(trained)} only")
    summary = run_record(first)
    summary["card"] = " / ".join(dict.fromkeys(plan["card"] for _, plan in runs))
    summary["tasks"] = {}
    for task in tasks or trained:
        folders = task_seeds(runs, task)
        results = {seed: seed_result(seed_folder(out, task, seed), task, seed) for seed, out in folders.items()}
        lengths = sorted(set.intersection(*(set(r["accuracy"]) for r in results.values())))
        # A length no seed reached is reported as not measured; one that only some seeds reached has no fair mean.
        not_measured = sorted(set(first["segments"]) - set.union(*(set(r["accuracy"]) for r in results.values())))
        for seed, result in results.items():
            gap = sorted(set(first["segments"]) - set(result["accuracy"]) - set(not_measured))
            if gap:
                output = seed_folder(folders[seed], task, seed) / "extrapolate.out"
                raise RuntimeFailure(f"{task} seed {seed} has no result at {gap} segments (its extrapolation "
                                     f"stopped early); see {output}")
        any_seed = next(iter(results.values()))
        contributing = [(out, plan, [seed for seed, folder in folders.items() if folder == out])
                        for out, plan in runs if out in folders.values()]
        single_seed: list[dict] = []
        other_tests: list[dict] = []
        for out, _, seeds in contributing:
            rows = extra_rows(out, task, seeds)
            single_seed.extend(rows[0])
            other_tests.extend(rows[1])
        summary["tasks"][task] = {
            "preset": f"{first['preset']}_{task}",
            "seeds": list(results),
            "lengths": {str(n): {"segments": n, "tokens": any_seed["tokens"][n],
                                 "samples": any_seed["samples"][n],
                                 "mean": round(mean(r["accuracy"][n] for r in results.values()), 2),
                                 "min": round(min(r["accuracy"][n] for r in results.values()), 2),
                                 "max": round(max(r["accuracy"][n] for r in results.values()), 2),
                                 "per_seed": {str(s): round(r["accuracy"][n], 2) for s, r in results.items()},
                                 **breakdown(results, n)}
                        for n in lengths},
            "not_measured": not_measured,
            "single_seed": single_seed,
            "other_tests": other_tests,
            "train_seconds": {str(s): r["train_seconds"] for s, r in results.items()},
            "curriculum_completed": {str(s): r["completed"] for s, r in results.items()},
            "run": run_record(contributing[0][1]),
        }
        if any(r["reverts"] for r in results.values()):  # trainer.revert_drop acted in some seed
            summary["tasks"][task]["reverts"] = {str(s): r["reverts"] for s, r in results.items()}
        if len(contributing) > 1:  # which run trained which seeds
            summary["tasks"][task]["runs"] = [{**run_record(plan), "seeds": seeds} for _, plan, seeds in contributing]
    return summary


def keep_other_tasks(summary: dict, earlier_path: Path) -> list[str]:
    """Tasks of the summary already in `into` that this run did not train stay in it, each with the run that
    measured it (`run`): rerunning one task replaces that task's numbers, all seeds at once, and nothing else."""
    if not earlier_path.exists():
        return []
    earlier = read_json(earlier_path, "the summary already there")
    kept = [task for task in earlier.get("tasks", {}) if task not in summary["tasks"]]
    for task in kept:
        result = earlier["tasks"][task]
        result.setdefault("run", {key: earlier.get(key) for key in RUN_KEYS})
    # in the order the earlier summary had them (so each task keeps its colour in the plot), new tasks last
    order = [*earlier["tasks"], *(task for task in summary["tasks"] if task not in earlier["tasks"])]
    merged = {**{task: earlier["tasks"][task] for task in kept}, **summary["tasks"]}
    summary["tasks"] = {task: merged[task] for task in order}
    return kept


def mean_range(row: dict) -> str:
    """One length of a summary as the tables write it: mean (min–max)."""
    return f"{row['mean']:.1f} ({row['min']:.1f}–{row['max']:.1f})"


def train_minutes(result: dict) -> float:
    """A task's training wall time, mean over its seeds, in minutes."""
    return mean(result["train_seconds"].values()) / 60


def plot_mean_band(ax, result: dict, label: str, color=None) -> str:
    """A task's mean accuracy against input length, with its min–max band over seeds; returns the colour."""
    rows = sorted(result["lengths"].values(), key=lambda row: row["segments"])
    tokens = [row["tokens"] for row in rows]
    line, = ax.plot(tokens, [row["mean"] for row in rows], marker="o", color=color, label=label)
    ax.fill_between(tokens, [row["min"] for row in rows], [row["max"] for row in rows], color=line.get_color(),
                    alpha=0.2)
    return line.get_color()


def plot_paper(ax, task: str, result: dict, color: str) -> None:
    """The paper's Figure 1 points of `task` (if it has them), at the token lengths of `result`'s segments."""
    if task in PAPER:
        first = min(result["lengths"].values(), key=lambda row: row["segments"])
        per_segment = first["tokens"] // first["segments"]
        ax.scatter([n * per_segment for n in PAPER[task]], list(PAPER[task].values()), marker="x", s=60,
                   color=color, label=f"{task}: paper (bert-base)")


def plot_summary(summary: dict, path: Path) -> None:
    from rmt_cli.plots import plt, save_accuracy_figure

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
    for color, (task, result) in zip(colors, summary["tasks"].items(), strict=False):
        plot_mean_band(ax, result, f"{task}: mean of {len(result['seeds'])} seeds", color)
        longest = max(row["segments"] for row in result["lengths"].values())
        labelled = set()
        for row in result.get("single_seed", []):
            again = " (trained again)" if row.get("trained_again") else ""
            label = f"{task}: seed {row['seed']}{again} only, {row['samples']} samples"
            ax.scatter([row["tokens"]], [row["accuracy"]], marker="D", s=50, facecolors="none", edgecolors=color,
                       label=label if label not in labelled else "_nolegend_")
            labelled.add(label)
            if row["segments"] > longest:  # lengths past the means' are named
                ax.annotate(f"{row['segments']:,} seg.", (row["tokens"], row["accuracy"]), fontsize=7,
                            xytext=(0, -12), textcoords="offset points", ha="center", color=color)
        plot_paper(ax, task, result, color)
    cards = cards_of_tasks(summary)
    # several cards get a line of their own
    title = f"{summary['preset']} presets" + ("\n" if ";" in cards else ", ") + cards
    save_accuracy_figure(fig, ax, path, title,
                         ylabel="accuracy, % (band: min to max over seeds)", legend_size=7)


def cards_of_tasks(summary: dict) -> str:
    """The card each task was measured on, as a title: one card for all, or which tasks ran on which (a task kept
    from an earlier summary keeps the card of its own run)."""
    tasks_by_card: dict[str, list[str]] = {}
    for task, result in summary["tasks"].items():
        tasks_by_card.setdefault(result.get("run", {}).get("card", summary["card"]), []).append(task)
    if len(tasks_by_card) == 1:
        return next(iter(tasks_by_card))
    return "; ".join(f"{', '.join(tasks)} on {card}" for card, tasks in tasks_by_card.items())


def write_summary(outs: Path | list[Path], into: Path, echo=print, tasks: list[str] | None = None) -> dict:
    """summary.json and accuracy_vs_length.png in `into`, with each seed's config, metrics and rows beside them;
    from one run folder, or from several runs of one protocol (see read_runs).

    Tasks of an earlier summary in `into` that this run did not train (or that `tasks` leaves out) are kept as they
    were (see keep_other_tasks).
    """
    runs = read_runs([outs] if isinstance(outs, Path) else list(outs))
    summary = summarize(runs, tasks)
    trained = list(summary["tasks"])
    into.mkdir(parents=True, exist_ok=True)
    for task in keep_other_tasks(summary, into / "summary.json"):
        echo(f"kept {task} from the summary already in {into} (run started {summary['tasks'][task]['run']['started']})")
    for task in trained:
        if (into / task).is_dir():  # an earlier run's files of this task would mix with this run's
            shutil.rmtree(into / task)
            echo(f"replaced {task} in {into} with this run's")
        for seed, out in task_seeds(runs, task).items():
            source, target = seed_folder(out, task, seed), into / task / f"seed{seed}"
            target.mkdir(parents=True, exist_ok=True)
            for step, names in KEPT_FILES.items():
                for name in names:
                    path = source / step / name if (source / step / name).exists() else source / name
                    if path.exists():
                        shutil.copyfile(path, target / (name if name.endswith(".out") else f"{step}_{name}"))
            for name in ("train.status.json", "extrapolate.status.json", "extrapolate.out"):
                if (source / name).exists():
                    shutil.copyfile(source / name, target / name)
            copy_single_seed_files(source, target)
    (into / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot_summary(summary, into / "accuracy_vs_length.png")
    return summary


def copy_single_seed_files(source: Path, target: Path) -> None:
    """Each extra extrapolation's rows, output and wall time (extrapolate_NAME.json, .out, .status.json), and the
    config, metrics, output and wall time of a training run again for it (train_NAME_config.yaml, ...)."""
    for extra in source.glob("extrapolate_*/extrapolation.json"):
        name = extra.parent.name.removeprefix("extrapolate_")
        copies = {extra: target / f"extrapolate_{name}.json"}
        for kept in (f"extrapolate_{name}.out", f"extrapolate_{name}.status.json",
                     f"train_{name}.out", f"train_{name}.status.json"):
            copies[source / kept] = target / kept
        for kept in KEPT_FILES["train"]:
            copies[source / f"train_{name}" / kept] = target / f"train_{name}_{kept}"
        for path, copy in copies.items():
            if path.exists():
                shutil.copyfile(path, copy)


def other_test_lines(summary: dict) -> list[str]:
    """Each seed's rows of another test (`other_tests`, e.g. `rmt reproduce run --noise-check`) beside its own test
    at the same lengths: 'detect seed 1, noise.eval_documents=[emma]: 512 segments 100.0 (test 61.5)'."""
    lines = []
    for task, result in summary["tasks"].items():
        grouped: dict[tuple[int, tuple[str, ...]], list[dict]] = {}
        for row in result.get("other_tests", []):
            grouped.setdefault((row["seed"], tuple(row["overrides"])), []).append(row)
        for (seed, overrides), rows in grouped.items():
            cells = []
            for row in sorted(rows, key=lambda row: row["segments"]):
                test = result["lengths"].get(str(row["segments"]), {}).get("per_seed", {}).get(str(seed))
                cells.append(f"{row['segments']:,} segments {row['accuracy']:.1f}" +
                             ("" if test is None else f" (test {test:.1f})"))
            lines.append(f"{task} seed {seed}, {' '.join(overrides)}: {', '.join(cells)}")
    return lines


def table(summary: dict) -> str:
    """The summary as a Markdown table: mean (min–max) per task and length."""
    lengths = sorted({int(n) for result in summary["tasks"].values()
                      for n in [*result["lengths"], *result.get("not_measured", [])]})
    lines = ["| task | " + " | ".join(f"{n:,}" for n in lengths) + " | training (mean) |",
             "| --- | " + " | ".join("--:" for _ in lengths) + " | --: |"]
    for task, result in summary["tasks"].items():
        cells = []
        for n in lengths:
            row = result["lengths"].get(str(n))
            cells.append("not measured" if row is None else mean_range(row))
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {train_minutes(result):.1f} min |")
    return "\n".join(lines)
