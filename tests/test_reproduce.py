"""The results protocol's summary: mean, min and max over seeds, from run folders alone."""

import json

import pytest

from rmt_cli.errors import RuntimeFailure
from rmt_cli.reproduce import PLAN, seed_folder
from rmt_cli.reproduce_summary import other_test_lines, table, write_summary

ACCURACY = {("memorize", 0): {1: 1.0, 8: 1.0}, ("memorize", 1): {1: 1.0, 8: 0.9},
            ("memorize", 2): {1: 0.95, 8: 0.5}}


def fake_protocol(out, accuracy=ACCURACY, seeds=(0, 1, 2)):
    out.mkdir(parents=True, exist_ok=True)
    (out / PLAN).write_text(json.dumps({"preset": "paper_minilm", "tasks": ["memorize"], "seeds": list(seeds),
                                        "segments": [1, 8], "samples": 20, "card": "NVIDIA H200",
                                        "command": "rmt reproduce run OUT", "started": "2026-12-01T00:00:00Z"}))
    for (task, seed), rows in accuracy.items():
        folder = seed_folder(out, task, seed)
        (folder / "extrapolate").mkdir(parents=True)
        (folder / "train").mkdir()
        (folder / "train.status.json").write_text(json.dumps({"exit_code": 0, "seconds": 60.0 * (seed + 1)}))
        (folder / "train" / "config.yaml").write_text("curriculum:\n  advance_at: null\n  stages:\n"
                                                      "  - {segments: 1, steps: 10}\n  - {segments: 2, steps: 10}\n")
        last_step = 10 if seed != 2 else 6  # seed 2 was stopped by a time limit
        (folder / "train" / "metrics.jsonl").write_text(json.dumps(
            {"kind": "val", "stage": 2, "step": last_step, "val_accuracy": 0.5}) + "\n")
        (folder / "extrapolate" / "extrapolation.json").write_text(json.dumps(
            [{"segments": n, "tokens": 499 * n, "accuracy": a, "samples": 20} for n, a in rows.items()]))
    return out


def test_summary_gives_mean_min_max_and_every_seed(tmp_path):
    summary = write_summary(fake_protocol(tmp_path / "run"), tmp_path / "results")
    at8 = summary["tasks"]["memorize"]["lengths"]["8"]
    assert (at8["mean"], at8["min"], at8["max"]) == (80.0, 50.0, 100.0)
    assert at8["per_seed"] == {"0": 100.0, "1": 90.0, "2": 50.0} and at8["tokens"] == 3992
    assert summary["tasks"]["memorize"]["train_seconds"] == {"0": 60.0, "1": 120.0, "2": 180.0}
    assert summary["card"] == "NVIDIA H200" and summary["tasks"]["memorize"]["not_measured"] == []
    assert summary["tasks"]["memorize"]["curriculum_completed"] == {"0": True, "1": True, "2": False}
    assert json.loads((tmp_path / "results" / "summary.json").read_text()) == summary
    assert (tmp_path / "results" / "accuracy_vs_length.png").stat().st_size > 10_000
    assert (tmp_path / "results" / "memorize" / "seed2" / "extrapolate_extrapolation.json").is_file()
    assert "| memorize | 98.3 (95.0–100.0) | 80.0 (50.0–100.0) | 2.0 min |" in table(summary)
    assert "reverts" not in summary["tasks"]["memorize"]  # no seed's weights were sent back to a best


def test_the_summary_says_where_revert_drop_sent_a_seed_back_to_its_stage_best(tmp_path):
    out = fake_protocol(tmp_path / "run")
    revert = {"kind": "revert", "stage": 2, "step": 4, "val_accuracy": 0.25, "best_val_accuracy": 0.5}
    with (seed_folder(out, "memorize", 1) / "train" / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps(revert) + "\n")
    summary = write_summary(out, tmp_path / "results")
    assert summary["tasks"]["memorize"]["reverts"] == {
        "0": [], "1": [{key: value for key, value in revert.items() if key != "kind"}], "2": []}


def test_the_accuracy_on_questions_several_facts_name_is_summarised_when_every_seed_has_it(tmp_path):
    out = fake_protocol(tmp_path / "run")
    for seed, several in ((0, 0.5), (1, 0.25), (2, 1.0)):
        path = seed_folder(out, "memorize", seed) / "extrapolate" / "extrapolation.json"
        rows = json.loads(path.read_text())
        rows[1]["accuracy_several_facts_name_question"] = several  # at 8 segments only
        rows[0]["accuracy_several_facts_name_question"] = None if seed == 1 else 1.0  # no such question at 1
        path.write_text(json.dumps(rows))
    lengths = write_summary(out, tmp_path / "results")["tasks"]["memorize"]["lengths"]
    assert lengths["8"]["several_facts_name_question"] == {"mean": 58.33,
                                                           "per_seed": {"0": 50.0, "1": 25.0, "2": 100.0}}
    assert "several_facts_name_question" not in lengths["1"]


def test_the_accuracy_by_where_the_fact_is_is_summarised_per_quarter(tmp_path):
    out = fake_protocol(tmp_path / "run")
    for seed in (0, 1, 2):
        path = seed_folder(out, "memorize", seed) / "extrapolate" / "extrapolation.json"
        rows = json.loads(path.read_text())
        for quarter in (1, 2, 3, 4):
            rows[1][f"accuracy_fact_in_q{quarter}"] = (seed + quarter) / 10
        path.write_text(json.dumps(rows))
    at8 = write_summary(out, tmp_path / "results")["tasks"]["memorize"]["lengths"]["8"]
    assert at8["fact_in_q1"] == {"mean": 20.0, "per_seed": {"0": 10.0, "1": 20.0, "2": 30.0}}
    assert at8["fact_in_q4"]["mean"] == 50.0


def test_the_accuracy_per_right_answer_is_summarised_when_every_seed_has_it(tmp_path):
    out = fake_protocol(tmp_path / "run")
    for seed in (0, 1, 2):
        path = seed_folder(out, "memorize", seed) / "extrapolate" / "extrapolation.json"
        rows = json.loads(path.read_text())
        rows[1].update(accuracy_answer_garden=seed / 4, accuracy_answer_hallway=None if seed == 2 else 1.0)
        path.write_text(json.dumps(rows))
    at8 = write_summary(out, tmp_path / "results")["tasks"]["memorize"]["lengths"]["8"]
    assert at8["answer_garden"] == {"mean": 25.0, "per_seed": {"0": 0.0, "1": 25.0, "2": 50.0}}
    assert "answer_hallway" not in at8  # seed 2's test had no hallway sample at this length


def test_a_missing_seed_is_one_clear_error(tmp_path):
    accuracy = {key: rows for key, rows in ACCURACY.items() if key[1] != 1}
    with pytest.raises(RuntimeFailure, match="memorize seed 1 has no finished training"):
        write_summary(fake_protocol(tmp_path / "run", accuracy), tmp_path / "results")


def one_seed_runs(tmp_path, overrides=(("backbone.name_or_path=/a/minilm",), ("backbone.name_or_path=/b/minilm",),
                                        ("backbone.name_or_path=/c/minilm",))):
    """Seeds 0, 1 and 2 of fake_protocol, each in a run of its own (one machine or job per seed)."""
    outs = []
    for seed, extra in enumerate(overrides):
        out = fake_protocol(tmp_path / f"run{seed}", {key: rows for key, rows in ACCURACY.items() if key[1] == seed},
                            seeds=(seed,))
        plan = json.loads((out / PLAN).read_text())
        plan.update(overrides=["trainer.lr=1e-4", *extra], card=["NVIDIA H200", "NVIDIA H100", "NVIDIA H200"][seed])
        (out / PLAN).write_text(json.dumps(plan))
        outs.append(out)
    return outs


def test_seeds_trained_in_runs_of_their_own_are_summarised_as_one(tmp_path):
    together = write_summary(fake_protocol(tmp_path / "run"), tmp_path / "together")["tasks"]["memorize"]
    summary = write_summary(one_seed_runs(tmp_path), tmp_path / "results")
    apart = summary["tasks"]["memorize"]
    assert apart["lengths"] == together["lengths"] and apart["seeds"] == [0, 1, 2]
    assert apart["train_seconds"] == together["train_seconds"]
    assert [(run["card"], run["seeds"]) for run in apart["runs"]] == [("NVIDIA H200", [0]), ("NVIDIA H100", [1]),
                                                                       ("NVIDIA H200", [2])]
    assert summary["card"] == "NVIDIA H200 / NVIDIA H100"
    assert all((tmp_path / "results" / "memorize" / f"seed{seed}" / "extrapolate_extrapolation.json").is_file()
               for seed in (0, 1, 2))


def test_runs_summarised_as_one_must_be_one_protocol_and_hold_each_seed_once(tmp_path):
    from rmt_cli.errors import UsageError

    other = one_seed_runs(tmp_path / "other", overrides=((), ("curriculum.stages=[{segments:1,steps:5}]",), ()))
    with pytest.raises(UsageError, match=r"not runs of one protocol: their overrides differ "
                                         r"\(curriculum.stages=\[\{segments:1,steps:5\}\]\)"):
        write_summary(other, tmp_path / "results")
    first, second, _ = one_seed_runs(tmp_path / "seeds")
    plan = json.loads((second / PLAN).read_text())
    (second / PLAN).write_text(json.dumps({**plan, "samples": 50}))
    with pytest.raises(UsageError, match="not runs of one protocol: samples 50 against 20"):
        write_summary([first, second], tmp_path / "results")
    again = fake_protocol(tmp_path / "again", {("memorize", 0): {1: 1.0, 8: 0.2}}, seeds=(0,))
    plan = json.loads((again / PLAN).read_text())
    (again / PLAN).write_text(json.dumps({**plan, "overrides": ["trainer.lr=1e-4"]}))
    with pytest.raises(UsageError, match="memorize seed 0 was trained in both .*run0 and .*again: a summary takes "
                                         "each seed once"):
        write_summary([first, again], tmp_path / "results")
    assert not (tmp_path / "results").exists()  # nothing written


def test_a_seed_whose_extrapolation_stopped_early_is_named(tmp_path):
    accuracy = {**ACCURACY, ("memorize", 2): {1: 0.95}}
    with pytest.raises(RuntimeFailure, match=r"memorize seed 2 has no result at \[8\] segments"):
        write_summary(fake_protocol(tmp_path / "run", accuracy), tmp_path / "results")


def test_a_length_that_no_seed_reached_is_reported_as_not_measured(tmp_path):
    accuracy = {key: {1: rows[1]} for key, rows in ACCURACY.items()}
    summary = write_summary(fake_protocol(tmp_path / "run", accuracy), tmp_path / "results")
    assert summary["tasks"]["memorize"]["not_measured"] == [8]
    assert list(summary["tasks"]["memorize"]["lengths"]) == ["1"]
    assert "| memorize | 98.3 (95.0–100.0) | not measured |" in table(summary)


def test_lengths_measured_on_one_seed_stay_apart_from_the_means(tmp_path):
    out = fake_protocol(tmp_path / "run")
    extra = seed_folder(out, "memorize", 0) / "extrapolate_20480"
    extra.mkdir()
    (extra / "extrapolation.json").write_text(json.dumps(
        [{"segments": 20480, "tokens": 499 * 20480, "accuracy": 1.0, "samples": 100}]))
    summary = write_summary(out, tmp_path / "results")
    memorize = summary["tasks"]["memorize"]
    assert memorize["single_seed"] == [{"seed": 0, "segments": 20480, "tokens": 499 * 20480, "samples": 100,
                                        "accuracy": 100.0}]
    assert "20480" not in memorize["lengths"]
    assert (tmp_path / "results" / "memorize" / "seed0" / "extrapolate_20480.json").is_file()


def test_an_extrapolation_on_another_test_is_kept_apart_with_its_overrides(tmp_path):
    out = fake_protocol(tmp_path / "run")
    for name, overrides in (("20480", ["checkpoint=/x/train", "segments=[20480]", "backbone.name_or_path=/w"]),
                            ("training_noise", ["checkpoint=/x/train", "noise.eval_documents=[emma]"])):
        extra = seed_folder(out, "memorize", 1) / f"extrapolate_{name}"
        (extra / ".hydra").mkdir(parents=True)
        (extra / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
        (extra / "extrapolation.json").write_text(json.dumps(
            [{"segments": 512, "tokens": 499 * 512, "accuracy": 0.25 if name == "20480" else 1.0, "samples": 100}]))
    summary = write_summary(out, tmp_path / "results")
    memorize = summary["tasks"]["memorize"]
    assert [row["accuracy"] for row in memorize["single_seed"]] == [25.0]
    assert memorize["other_tests"] == [{"seed": 1, "segments": 512, "tokens": 499 * 512, "samples": 100,
                                        "accuracy": 100.0, "name": "training_noise",
                                        "overrides": ["noise.eval_documents=[emma]"]}]
    assert other_test_lines(summary) == ["memorize seed 1, noise.eval_documents=[emma]: 512 segments 100.0"]
    memorize["other_tests"][0]["segments"] = 8  # a length of the test itself: shown beside the seed's test
    assert other_test_lines(summary) == ["memorize seed 1, noise.eval_documents=[emma]: 8 segments 100.0 (test 90.0)"]


def test_a_longer_extrapolation_of_the_seed_trained_again_says_so(tmp_path):
    out = fake_protocol(tmp_path / "run")
    folder = seed_folder(out, "memorize", 0)
    (folder / "extrapolate_81920").mkdir()
    (folder / "extrapolate_81920" / "extrapolation.json").write_text(json.dumps(
        [{"segments": 81920, "tokens": 499 * 81920, "accuracy": 1.0, "samples": 100}]))
    (folder / "train_81920").mkdir()
    (folder / "train_81920" / "config.yaml").write_text("seed: 0\n")
    (folder / "train_81920.status.json").write_text(json.dumps({"exit_code": 0, "seconds": 110}))
    summary = write_summary(out, tmp_path / "results")
    assert summary["tasks"]["memorize"]["single_seed"] == [
        {"seed": 0, "segments": 81920, "tokens": 499 * 81920, "samples": 100, "accuracy": 100.0,
         "trained_again": True, "train_seconds": 110}]
    kept = tmp_path / "results" / "memorize" / "seed0"
    assert (kept / "train_81920_config.yaml").read_text() == "seed: 0\n"
    assert (kept / "train_81920.status.json").is_file() and (kept / "extrapolate_81920.json").is_file()


def test_summarize_can_take_some_tasks_of_a_run_and_keep_the_rest(tmp_path):
    from rmt_cli.errors import UsageError

    into = tmp_path / "results"
    first = fake_protocol(tmp_path / "first", {("detect", s): {1: 1.0, 8: 0.6} for s in (0, 1, 2)})
    (first / PLAN).write_text(json.dumps({**json.loads((first / PLAN).read_text()), "tasks": ["detect"]}))
    write_summary(first, into)
    both = fake_protocol(tmp_path / "both", {**ACCURACY, **{("detect", s): {1: 1.0, 8: 0.2} for s in (0, 1, 2)}})
    plan = json.loads((both / PLAN).read_text())
    (both / PLAN).write_text(json.dumps({**plan, "tasks": ["memorize", "detect"]}))
    summary = write_summary(both, into, tasks=["memorize"])
    assert summary["tasks"]["detect"]["lengths"]["8"]["mean"] == 60.0  # the first run's, not this run's 20
    assert summary["tasks"]["memorize"]["lengths"]["8"]["mean"] == 80.0
    with pytest.raises(UsageError, match="--tasks reasoning: .* trained memorize, detect only"):
        write_summary(both, into, tasks=["reasoning"])


def test_extrapolation_repeats_the_backbone_the_user_chose_for_training(tmp_path):
    from rmt_cli.code_trust import check_checkpoint_backbone
    from rmt_cli.errors import UsageError
    from rmt_cli.reproduce import extrapolate_command

    overrides = ["backbone.name_or_path=/models/minilm", "noise.path=/corpora/austen", "trainer.lr=1e-4"]
    command = extrapolate_command(tmp_path / "detect" / "seed0", [1, 8], 20, 20, overrides)
    assert command[-1] == "backbone.name_or_path=/models/minilm" and "noise.path=/corpora/austen" not in command
    # what the checkpoint asks for is allowed because this command line sets it, as it was refused without it
    keys = {item.split("=", 1)[0] for item in command if "=" in item}
    trained = {"name": "minilm", "name_or_path": "/models/minilm"}
    check_checkpoint_backbone(trained, keys, tmp_path)
    with pytest.raises(UsageError, match="backbone.name_or_path=/models/minilm"):
        check_checkpoint_backbone(trained, {"hydra.run.dir"}, tmp_path)


def test_a_run_of_one_task_replaces_that_task_and_keeps_the_others(tmp_path):
    from rmt_cli.reproduce_summary import cards_of_tasks

    into = tmp_path / "results"
    write_summary(fake_protocol(tmp_path / "first"), into)
    (into / "memorize" / "seed0" / "stale.json").write_text("{}")
    detect = {("detect", seed): {1: 1.0, 8: 0.6} for seed in (0, 1, 2)}
    second = fake_protocol(tmp_path / "second", detect)
    plan = json.loads((second / PLAN).read_text())
    (second / PLAN).write_text(json.dumps({**plan, "tasks": ["detect"], "started": "2026-12-02T00:00:00Z"}))
    said = []
    summary = write_summary(second, into, said.append)
    assert list(summary["tasks"]) == ["memorize", "detect"]
    assert summary["tasks"]["memorize"]["lengths"]["8"]["mean"] == 80.0  # as the first run measured it
    assert summary["tasks"]["memorize"]["run"]["started"] == "2026-12-01T00:00:00Z"
    assert summary["tasks"]["detect"]["run"]["started"] == "2026-12-02T00:00:00Z"
    assert said == [f"kept memorize from the summary already in {into} (run started 2026-12-01T00:00:00Z)"]
    assert cards_of_tasks(summary) == summary["card"]  # both runs on the same card: named once in the plot's title
    summary["tasks"]["detect"]["run"]["card"] = "NVIDIA H100 80GB HBM3"
    assert cards_of_tasks(summary) == f"memorize on {summary['card']}; detect on NVIDIA H100 80GB HBM3"
    # rerunning memorize replaces all of its seeds' files: nothing of the earlier run stays beside the new numbers
    write_summary(fake_protocol(tmp_path / "third", {key: {1: 1.0, 8: 1.0} for key in ACCURACY}), into, said.append)
    assert not (into / "memorize" / "seed0" / "stale.json").exists()
    assert json.loads((into / "summary.json").read_text())["tasks"]["memorize"]["lengths"]["8"]["mean"] == 100.0


def test_the_readme_results_table_is_the_committed_summary():
    from pathlib import Path

    def bound(value):  # the README writes 100 without a decimal
        return "100" if value == 100 else f"{value:.1f}"

    root = Path(__file__).resolve().parents[1]
    summary = json.loads((root / "results" / "paper" / "summary.json").read_text())
    readme = (root / "README.md").read_text()
    for task, result in summary["tasks"].items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| {task} | `paper_minilm_{task}` |"))
        cells = [cell.strip().strip("*") for cell in row.split("|")[3:8]]
        lengths = [result["lengths"][n] for n in ("1", "8", "32", "512", "4096")]
        assert cells == [f"{x['mean']:.1f} ({bound(x['min'])}–{bound(x['max'])})" for x in lengths], task


def test_a_last_stage_left_at_its_own_advance_at_counts_as_completed(tmp_path):
    from rmt_cli.reproduce_summary import curriculum_completed

    (tmp_path / "config.yaml").write_text("curriculum:\n  advance_at: null\n  stages:\n"
                                          "  - {segments: 32, steps: 600, advance_at: 0.97}\n")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "val", "stage": 1, "step": 150,
                                                        "val_accuracy": 0.96}) + "\n")
    assert not curriculum_completed(tmp_path)
    with (tmp_path / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps({"kind": "val", "stage": 1, "step": 200, "val_accuracy": 0.98}) + "\n")
    assert curriculum_completed(tmp_path)


def test_a_last_stage_cut_to_fit_the_time_limit_counts_as_completed_at_its_new_end(tmp_path):
    from rmt_cli.reproduce_summary import curriculum_completed

    (tmp_path / "config.yaml").write_text("curriculum:\n  advance_at: null\n  stages:\n"
                                          "  - {segments: 32, steps: 300}\n")
    lines = [{"kind": "val", "stage": 1, "step": 50, "val_accuracy": 0.9},
             {"kind": "fit", "stage": 1, "step": 50, "steps": 185, "planned": 300},
             {"kind": "val", "stage": 1, "step": 100, "val_accuracy": 0.9},
             {"kind": "fit", "stage": 1, "step": 100, "steps": 184, "planned": 300}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert not curriculum_completed(tmp_path)
    with (tmp_path / "metrics.jsonl").open("a") as metrics:  # the first cut's end is no longer the stage's end
        metrics.write(json.dumps({"kind": "val", "stage": 1, "step": 185, "val_accuracy": 0.9}) + "\n")
    assert not curriculum_completed(tmp_path)
    with (tmp_path / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps({"kind": "val", "stage": 1, "step": 184, "val_accuracy": 0.9}) + "\n")
    assert curriculum_completed(tmp_path)


def test_beyond_extrapolates_one_seed_further_once_its_main_extrapolation_ends(tmp_path, monkeypatch):
    """The protocol's commands replaced by a script that logs its arguments and exits 0: which jobs start, with what."""
    import sys

    from rmt_cli import reproduce

    script = "import sys; print(' '.join(sys.argv[1:]))"
    monkeypatch.setattr(reproduce, "rmt_command", lambda *args: [sys.executable, "-c", script, *args])
    monkeypatch.setattr(reproduce.time, "sleep", lambda seconds: None)
    said = []
    reproduce.run_protocol(tmp_path, "paper_minilm", ["detect"], [0, 1], [1, 8], 20, 20,
                           ["backbone.name_or_path=/models/minilm"], said.append, reproduce.Beyond(20480, 100, 0))
    longer = seed_folder(tmp_path, "detect", 0) / "extrapolate_20480.out"
    arguments = longer.read_text().split()
    assert arguments[:2] == ["extrapolate", "--checkpoint"] and arguments[2].endswith("detect/seed0/train")
    assert arguments[3:9] == ["--segments", "20480", "--samples", "100", "--batch-size", "100"]
    assert arguments[-2].endswith("detect/seed0/extrapolate_20480")
    assert arguments[-1] == "backbone.name_or_path=/models/minilm"
    assert json.loads((longer.parent / "extrapolate_20480.status.json").read_text())["exit_code"] == 0
    assert not (seed_folder(tmp_path, "detect", 1) / "extrapolate_20480.out").exists()
    assert "--segments 1,8" in (seed_folder(tmp_path, "detect", 1) / "extrapolate.out").read_text()
    assert json.loads((tmp_path / PLAN).read_text())["beyond"] == {"segments": 20480, "samples": 100, "seed": 0}
    assert any("to 20480 segments ended (exit 0)" in line for line in said)


def test_the_noise_check_tests_every_seed_on_training_novels_once_its_extrapolation_ends(tmp_path, monkeypatch):
    """The protocol's commands replaced by a script that logs its arguments and exits 0."""
    import sys

    from rmt_cli import reproduce

    script = "import sys; print(' '.join(sys.argv[1:]))"
    monkeypatch.setattr(reproduce, "rmt_command", lambda *args: [sys.executable, "-c", script, *args])
    monkeypatch.setattr(reproduce.time, "sleep", lambda seconds: None)
    said = []
    check = reproduce.NoiseCheck(("emma", "prideprejudice"), (32, 512), 20)
    reproduce.run_protocol(tmp_path, "paper_minilm", ["detect"], [0, 1], [1, 8], 20, 20,
                           ["backbone.name_or_path=/models/minilm", "trainer.lr=1e-4"], said.append,
                           reproduce.Beyond(64, 10, 0), check)
    for seed in (0, 1):
        arguments = (seed_folder(tmp_path, "detect", seed) / "extrapolate_training_noise.out").read_text().split()
        assert arguments[:2] == ["extrapolate", "--checkpoint"] and arguments[2].endswith(f"detect/seed{seed}/train")
        assert arguments[3:9] == ["--segments", "32,512", "--samples", "20", "--batch-size", "20"]
        assert arguments[-3].endswith(f"detect/seed{seed}/extrapolate_training_noise")
        assert arguments[-2:] == ["backbone.name_or_path=/models/minilm", "noise.eval_documents=[emma,prideprejudice]"]
        assert any(line.startswith(f"test of detect seed {seed} on noise from emma, prideprejudice ended (exit 0)")
                   for line in said)
    assert json.loads((tmp_path / PLAN).read_text())["noise_check"] == {
        "documents": ["emma", "prideprejudice"], "segments": [32, 512], "samples": 20}
    assert (seed_folder(tmp_path, "detect", 0) / "extrapolate_64.out").exists()  # --beyond still runs beside it

    (seed_folder(tmp_path, "detect", 1) / "extrapolate_training_noise.status.json").unlink()  # interrupted
    said.clear()
    reproduce.resume_protocol(tmp_path, said.append)
    assert said[0] == "detect seed 1 was extrapolated; started its test on noise from emma, prideprejudice"
    assert len(said) == 2 and said[1].startswith("test of detect seed 1 on noise")


def test_beyond_seed_outside_the_seeds_is_one_line(tmp_path):
    from helpers.cli import rmt

    result = rmt("reproduce", "run", str(tmp_path / "out"), "--seeds", "0,1", "--beyond", "20480", "--beyond-seed", "2")
    assert result.returncode == 2 and "error: --beyond-seed 2 is not one of --seeds 0,1" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_preset_whose_noise_is_not_downloaded_is_one_line_before_any_run_starts(tmp_path, monkeypatch):
    """detect's preset reads Shakespeare beside the novels: without it, every detect seed would fail seconds in."""
    from helpers.cli import rmt

    from rmt_cli import reproduce
    from rmt_cli.reproduce import check_trainings_can_start

    austen = tmp_path / "austen"
    austen.mkdir()
    for novel in ("emma", "northangerabbey", "persuasion"):
        (austen / f"{novel}.txt").write_text("It is a truth universally acknowledged.\n")
    data = tmp_path / "data"
    monkeypatch.setenv("RMT_DATA_DIR", str(data))
    out = tmp_path / "out"
    result = rmt("reproduce", "run", str(out), "--tasks", "memorize,detect", "--override", f"noise.path={austen}")
    assert result.returncode == 1 and out.exists() is False
    assert result.stderr.strip().splitlines() == [
        f"error: detect cannot start (experiment=paper_minilm_detect): the shakespeare corpus is not downloaded "
        f"({data / 'shakespeare'} does not exist): run `rmt download --shakespeare`, or fix noise.extra_training"]

    result = rmt("reproduce", "run", str(out), "--tasks", "detcet")
    assert result.returncode == 2 and "detcet cannot start (experiment=paper_minilm_detcet)" in result.stderr
    (data / "shakespeare").mkdir(parents=True)
    (data / "shakespeare" / "hamlet.txt").write_text("To be, or not to be.\n")
    check_trainings_can_start("paper_minilm", ["memorize", "detect", "reasoning"], [f"noise.path={austen}"])
    if reproduce.device_name() == "cpu":  # where they can start, a machine without a GPU is the next thing said
        result = rmt("reproduce", "run", str(out), "--tasks", "memorize,detect", "--override", f"noise.path={austen}")
        assert result.returncode == 2 and out.exists() is False
        assert result.stderr.strip() == ("error: this machine has no CUDA GPU: the protocol's 6 GPU-sized trainings "
                                         "would run side by side on its CPU; run it on a GPU machine, or pass "
                                         "--allow-cpu")


def test_resume_runs_only_what_an_interrupted_run_lacks(tmp_path, monkeypatch):
    """The protocol's commands replaced by a script that logs its arguments and exits 0."""
    import sys

    from rmt_cli import reproduce
    from rmt_cli.errors import UsageError

    script = "import sys; print(' '.join(sys.argv[1:]))"
    monkeypatch.setattr(reproduce, "rmt_command", lambda *args: [sys.executable, "-c", script, *args])
    monkeypatch.setattr(reproduce.time, "sleep", lambda seconds: None)
    reproduce.run_protocol(tmp_path, "paper_minilm", ["detect"], [0, 1, 2], [1, 8], 20, 20, ["trainer.lr=1e-4"],
                           lambda line: None, reproduce.Beyond(64, 10, 0))
    seed0, seed1, seed2 = (seed_folder(tmp_path, "detect", seed) for seed in (0, 1, 2))
    # interrupted: seed 0's longer extrapolation never ended, seed 1's training was killed, seed 2's
    # extrapolation failed
    (seed0 / "extrapolate_64.status.json").unlink()
    (seed1 / "train.status.json").unlink()
    (seed1 / "train").mkdir(exist_ok=True)  # its run folder, where `rmt train` finds its last checkpoint
    (seed2 / "extrapolate.status.json").write_text(json.dumps({"exit_code": 1, "seconds": 3.0}))
    logs = [log for folder in (seed0, seed1, seed2) for log in folder.glob("*.out")]
    for log in logs:
        log.write_text("earlier attempt\n")
    said = []
    reproduce.resume_protocol(tmp_path, said.append)
    rerun = {f"{log.parent.name}/{log.name}" for log in logs if log.read_text() != "earlier attempt\n"}
    assert all(log.read_text().startswith("earlier attempt\n") for log in logs)  # each attempt's output is kept
    assert rerun == {"seed0/extrapolate_64.out", "seed1/train.out", "seed1/extrapolate.out", "seed2/extrapolate.out"}
    assert "trainer.lr=1e-4" in (seed1 / "train.out").read_text()  # the plan's overrides, as the first time
    assert all(reproduce.succeeded(folder / "extrapolate.status.json") for folder in (seed0, seed1, seed2))
    assert said[:3] == ["detect seed 0 was extrapolated; started its extrapolation to 64 segments",
                        "started training detect seed 1 again (it continues from its last checkpoint, if it saved "
                        "one)", "detect seed 2 was trained; started its extrapolation"]
    assert len(json.loads((tmp_path / PLAN).read_text())["resumed"]) == 1
    with pytest.raises(UsageError, match=f"rmt reproduce resume {tmp_path}"):  # `run` on it again points to resume
        reproduce.run_protocol(tmp_path, "paper_minilm", ["detect"], [0], [1], 20, 20, [])


def record_jobs(monkeypatch) -> list:
    """The protocol's commands replaced by a script that exits 0, and its Job by one that records each job as it
    starts: ("seedN/LOG", how many jobs were running then, this one included, counting those not yet seen ended)."""
    import sys

    from rmt_cli import reproduce

    monkeypatch.setattr(reproduce, "rmt_command", lambda *args: [sys.executable, "-c", "pass", *args])
    monkeypatch.setattr(reproduce.time, "sleep", lambda seconds: None)
    started, running = [], set()

    class RecordedJob(reproduce.Job):
        def __init__(self, command, log, status):
            super().__init__(command, log, status)
            running.add(self)
            started.append((f"{log.parent.name}/{log.stem}", len(running)))

        def poll(self):
            code = super().poll()
            if code is not None:
                running.discard(self)
            return code

    monkeypatch.setattr(reproduce, "Job", RecordedJob)
    return started


def test_parallel_1_runs_one_job_at_a_time_finishing_each_seed_before_the_next_training(tmp_path, monkeypatch):
    from rmt_cli import reproduce

    started, said = record_jobs(monkeypatch), []
    reproduce.run_protocol(tmp_path, "paper_minilm", ["detect"], [0, 1], [1, 8], 20, 20, [], said.append,
                           reproduce.Beyond(64, 10, 0), parallel=1)
    assert started == [("seed0/train", 1), ("seed0/extrapolate", 1), ("seed0/extrapolate_64", 1),
                       ("seed1/train", 1), ("seed1/extrapolate", 1)]
    assert said[:2] == ["started training detect seed 0", "1 training waits for a free slot (--parallel 1)"]
    assert said.index("started training detect seed 1") > next(
        i for i, line in enumerate(said) if line.startswith("extrapolation of detect seed 0 to 64 segments ended"))
    assert json.loads((tmp_path / PLAN).read_text())["parallel"] == 1


def test_resume_keeps_to_the_plans_parallel_and_an_older_plan_runs_all_at_once(tmp_path, monkeypatch):
    from rmt_cli import reproduce

    started = record_jobs(monkeypatch)
    reproduce.run_protocol(tmp_path, "paper_minilm", ["detect"], [0, 1], [1], 20, 20, [], lambda line: None,
                           parallel=1)

    def interrupt_and_resume():  # both trainings killed: each seed runs again from its training
        for seed in (0, 1):
            (seed_folder(tmp_path, "detect", seed) / "train.status.json").unlink()
        started.clear()
        reproduce.resume_protocol(tmp_path, lambda line: None)
        return started

    assert interrupt_and_resume() == [("seed0/train", 1), ("seed0/extrapolate", 1), ("seed1/train", 1),
                                      ("seed1/extrapolate", 1)]
    assert json.loads((tmp_path / PLAN).read_text())["parallel"] == 1
    plan = json.loads((tmp_path / PLAN).read_text())
    del plan["parallel"]  # as plans were written before --parallel
    (tmp_path / PLAN).write_text(json.dumps(plan))
    assert interrupt_and_resume()[:2] == [("seed0/train", 1), ("seed1/train", 2)]


@pytest.mark.parametrize("value", ["0", "-1"])
def test_parallel_below_1_is_one_line(tmp_path, value):
    from helpers.cli import rmt

    result = rmt("reproduce", "run", str(tmp_path / "out"), "--parallel", value)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: --parallel {value}: give at least 1 (the most jobs running at once)"]
    assert not (tmp_path / "out").exists()


def test_init_from_starts_every_seed_where_the_same_seed_of_an_earlier_run_ended(tmp_path, monkeypatch):
    import sys

    from rmt_cli import reproduce

    script = "import sys; print(' '.join(sys.argv[1:]))"  # each command logs its arguments and exits 0
    monkeypatch.setattr(reproduce, "rmt_command", lambda *args: [sys.executable, "-c", script, *args])
    monkeypatch.setattr(reproduce.time, "sleep", lambda seconds: None)
    earlier = fake_protocol(tmp_path / "earlier")  # memorize seeds 0, 1, 2 trained
    out = tmp_path / "later"
    source = reproduce.earlier_run(earlier, ["memorize"], [0, 2])
    reproduce.run_protocol(out, "paper_minilm", ["memorize"], [0, 2], [1], 20, 20, ["trainer.lr=1e-5"],
                           lambda line: None, init_from=source)
    for seed in (0, 2):
        command = (seed_folder(out, "memorize", seed) / "train.out").read_text()
        assert f"trainer.init_from={seed_folder(earlier.resolve(), 'memorize', seed) / 'train'}" in command
        assert "trainer.lr=1e-5" in command
    assert "trainer.init_from" not in (seed_folder(out, "memorize", 0) / "extrapolate.out").read_text()
    assert json.loads((out / PLAN).read_text())["init_from"] == str(earlier.resolve())
    (seed_folder(out, "memorize", 2) / "train.status.json").unlink()  # interrupted: resume keeps the earlier run
    reproduce.resume_protocol(out, lambda line: None)
    assert (seed_folder(out, "memorize", 2) / "train.out").read_text().count(
        f"trainer.init_from={seed_folder(earlier.resolve(), 'memorize', 2) / 'train'}") == 2


def test_init_from_a_run_without_that_seed_is_one_line_before_anything_starts(tmp_path):
    from helpers.cli import rmt

    fake_protocol(tmp_path / "earlier", seeds=(0, 1))
    (seed_folder(tmp_path / "earlier", "memorize", 2) / "train.status.json").unlink()
    result = rmt("reproduce", "run", str(tmp_path / "out"), "--tasks", "memorize", "--init-from",
                 str(tmp_path / "earlier"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --init-from {tmp_path / 'earlier'}: {tmp_path / 'earlier' / 'memorize' / 'seed2'} holds no finished "
        "training; give the OUT of an `rmt reproduce run` that trained every task and seed asked for"]
    assert not (tmp_path / "out").exists()


def test_resume_adds_a_longer_extrapolation_and_a_noise_check_to_a_finished_run(tmp_path, monkeypatch):
    """The protocol's commands replaced by a script that logs its arguments and exits 0."""
    import sys

    from helpers.cli import rmt
    from rmt_cli import reproduce

    script = "import sys; print(' '.join(sys.argv[1:]))"
    monkeypatch.setattr(reproduce, "rmt_command", lambda *args: [sys.executable, "-c", script, *args])
    monkeypatch.setattr(reproduce.time, "sleep", lambda seconds: None)
    reproduce.run_protocol(tmp_path, "paper_minilm", ["detect"], [0, 1], [1, 8], 20, 20, ["trainer.lr=1e-4"],
                           lambda line: None)
    seed0, seed1 = seed_folder(tmp_path, "detect", 0), seed_folder(tmp_path, "detect", 1)
    finished = {log: log.read_text() for folder in (seed0, seed1) for log in folder.glob("*.out")}
    said = []
    reproduce.resume_protocol(tmp_path, said.append, reproduce.Beyond(64, 10, 1),
                              reproduce.NoiseCheck(("emma",), (32,), 20))
    assert all(log.read_text() == text for log, text in finished.items())  # nothing trained or tested again
    arguments = (seed1 / "extrapolate_64.out").read_text().split()
    assert arguments[3:9] == ["--segments", "64", "--samples", "10", "--batch-size", "10"]
    assert not (seed0 / "extrapolate_64.out").exists()
    assert all((folder / "extrapolate_training_noise.out").exists() for folder in (seed0, seed1))
    plan = json.loads((tmp_path / PLAN).read_text())
    assert plan["beyond"] == {"segments": 64, "samples": 10, "seed": 1}
    assert plan["noise_check"] == {"documents": ["emma"], "segments": [32], "samples": 20}
    assert [list(added)[0] for added in plan["added"]] == ["beyond", "noise_check"]
    assert plan["added"][0]["at"] == plan["resumed"][-1]
    assert said[0] == "detect seed 0 was extrapolated; started its test on noise from emma"
    assert sum("ended (exit 0)" in line for line in said) == 3 == len(said) - 3  # three jobs started, three ended

    reproduce.resume_protocol(tmp_path, said.append, reproduce.Beyond(64, 10, 1))  # the same again: nothing to add
    assert len(json.loads((tmp_path / PLAN).read_text())["added"]) == 2
    result = rmt("reproduce", "resume", str(tmp_path), "--beyond", "64", "--beyond-seed", "2")
    assert result.returncode == 2 and "error: --beyond-seed 2 is not one of --seeds 0,1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_that_did_not_record_its_overrides_cannot_be_resumed(tmp_path):
    from rmt_cli.errors import UsageError
    from rmt_cli.reproduce import resume_protocol

    fake_protocol(tmp_path)  # a plan.json as older versions wrote it
    with pytest.raises(UsageError, match="did not record its overrides"):
        resume_protocol(tmp_path)
    with pytest.raises(UsageError, match="holds no plan"):
        resume_protocol(tmp_path / "elsewhere")


def test_status_shows_where_each_run_stands_while_the_protocol_runs(tmp_path):
    from rich.console import Console

    from rmt_cli.errors import UsageError
    from rmt_cli.reproduce_status import extrapolation_cell, status_table, training_cell

    out = fake_protocol(tmp_path / "run")  # every seed trained and extrapolated
    plan = json.loads((out / PLAN).read_text())
    (out / PLAN).write_text(json.dumps({**plan, "beyond": {"segments": 64, "samples": 10, "seed": 0},
                                        "noise_check": {"documents": ["emma"], "segments": [32], "samples": 10}}))
    done, running, waiting = (seed_folder(out, "memorize", seed) for seed in (0, 1, 2))
    assert training_cell(done) == "exit 0, 60 s"  # its metrics hold no training line, so nothing more to say
    # seed 1 is in its second stage: no status yet, its last lines say where
    (running / "train.status.json").unlink()
    (running / "extrapolate" / "extrapolation.json").unlink()
    (running / "train" / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in [
        {"kind": "train", "time": 90.0, "stage": 2, "step": 4, "segments": "2", "loss": 0.5},
        {"kind": "val", "stage": 1, "step": 10, "segments": 1, "val_accuracy": 0.75},
        {"kind": "train", "time": 120.0, "stage": 2, "step": 6, "segments": "2", "loss": 0.4}]) + "\n{\"kind\": ")
    assert training_cell(running) == "2.0 min · stage 2/2 step 6/10 (2 seg) · val 75.0% (1 seg, stage 1 step 10)"
    (running / "train" / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in [  # cut to the time limit
        {"kind": "val", "stage": 2, "step": 6, "segments": 2, "val_accuracy": 0.5},
        {"kind": "fit", "stage": 2, "step": 6, "steps": 8, "planned": 10},
        {"kind": "train", "time": 130.0, "stage": 2, "step": 7, "segments": "2", "loss": 0.4}]) + "\n")
    assert training_cell(running) == ("2.2 min · stage 2/2 step 7/8 (cut from 10) (2 seg) · val 50.0% (2 seg, "
                                      "stage 2 step 6)")
    with (running / "train" / "metrics.jsonl").open("a") as metrics:  # lengthened again to every planned step
        metrics.write(json.dumps({"kind": "fit", "stage": 2, "step": 8, "steps": 10, "planned": 10}) + "\n")
    assert training_cell(running).startswith("2.2 min · stage 2/2 step 7/10 (2 seg)")
    with (running / "train" / "metrics.jsonl").open("a") as metrics:  # revert_drop sent the weights back
        metrics.write(json.dumps({"kind": "revert", "stage": 2, "step": 8, "val_accuracy": 0.2,
                                  "best_val_accuracy": 0.5}) + "\n")
    assert training_cell(running).endswith("val 50.0% (2 seg, stage 2 step 6) · reverted to the stage's best at "
                                           "stage 2 step 8")
    assert extrapolation_cell(running) == "-"
    # seed 2 waits for a free slot (--parallel), then has only started
    (waiting / "train.status.json").unlink()
    (waiting / "train" / "metrics.jsonl").unlink()
    (waiting / "train.out").unlink(missing_ok=True)
    assert training_cell(waiting) == "waiting for a free slot"
    (waiting / "train.out").write_text("")
    assert training_cell(waiting) == "starting"
    (done / "extrapolate.status.json").write_text(json.dumps({"exit_code": 0, "seconds": 30.0}))
    assert extrapolation_cell(done) == "1: 100.0, 8: 100.0 · exit 0, 30 s"
    (done / "extrapolate_64.out").write_text("")
    assert extrapolation_cell(done, "extrapolate_64") == "running"
    console = Console(record=True, width=300)
    console.print(status_table(out))
    text = console.export_text()
    assert "64 segments" in text and "started 2026-12-01T00:00:00Z on NVIDIA H200" in text
    assert "on noise from emma" in text
    with pytest.raises(UsageError, match="holds no plan"):
        status_table(tmp_path / "elsewhere")


def test_metrics_lines_leave_out_a_last_line_still_being_written(tmp_path):
    from rmt_cli.metrics import read_lines

    path = tmp_path / "metrics.jsonl"
    assert read_lines(path) == []
    path.write_text('{"kind": "train", "step": 1}\n\n{"kind": "val", "st')
    assert read_lines(path) == [{"kind": "train", "step": 1}]
    path.write_text('{"kind": "tr\n{"kind": "val"}\n')
    with pytest.raises(ValueError):
        read_lines(path)


def test_compare_puts_one_task_of_several_runs_side_by_side(tmp_path):
    from rmt_cli.reproduce_compare import compare

    write_summary(fake_protocol(tmp_path / "first"), tmp_path / "results")  # a summary folder
    better = {key: {1: 1.0, 8: 0.9 + 0.05 * key[1]} for key in ACCURACY}
    write_summary(fake_protocol(tmp_path / "second", better), tmp_path / "second" / "summary")  # a run's OUT
    plot = tmp_path / "memorize.png"
    lines = compare([tmp_path / "results", tmp_path / "second"], "memorize", plot).splitlines()
    assert lines[0] == ("| memorize: run | started (UTC) | seeds | 1 | 8 | training (mean) | curricula completed |")
    assert lines[2] == (f"| {tmp_path / 'results'} | 2026-12-01 00:00:00 | 3 | 98.3 (95.0–100.0) | "
                        "80.0 (50.0–100.0) | 2.0 min | 2 of 3 |")
    assert lines[3].split(" | ")[4] == "95.0 (90.0–100.0)"
    assert plot.stat().st_size > 10_000
    seeds = compare([tmp_path / "results", tmp_path / "second"], "memorize", per_seed=True).split("\n\n")[1]
    assert seeds.splitlines()[0] == "| memorize: run | seed | 1 | 8 |"
    assert seeds.splitlines()[4] == f"| {tmp_path / 'results'} | 2 | 95.0 | 50.0 |"
    assert seeds.splitlines()[7] == f"| {tmp_path / 'second'} | 2 | 100.0 | 100.0 |"


@pytest.mark.parametrize("make, task, message", [
    (lambda path: None, "memorize", "holds no summary.json of `rmt reproduce summarize`"),
    (lambda path: (path / "summary.json").write_text('{"detect": {}}'), "memorize", "is no summary"),
    (lambda path: (path / "summary.json").write_text("{"), "memorize", "is not valid JSON"),
])
def test_compare_names_what_is_wrong_with_an_input(tmp_path, make, task, message):
    from rmt_cli.errors import RmtError
    from rmt_cli.reproduce_compare import compare

    make(tmp_path)
    with pytest.raises(RmtError, match=message):
        compare([tmp_path], task)


@pytest.mark.slow  # four CPU trainings and their extrapolations, as subprocesses
def test_the_decoder_presets_run_the_protocol_end_to_end_at_tiny_scale(tmp_path):
    from helpers.cli import rmt

    out = tmp_path / "out"
    tiny = ["backbone=tiny-llama", "noise=synthetic", "segment.length=64", "trainer.batch_size=2",
            "trainer.val_samples=4", "trainer.eval_every=2",
            "curriculum.stages=[{segments:1,steps:2},{segments:2,steps:2}]"]
    result = rmt("reproduce", "run", str(out), "--preset", "smollm2", "--tasks", "memorize,qa1", "--seeds", "0",
                 "--segments", "1,2", "--samples", "8", "--batch-size", "8", "--allow-cpu",
                 *[arg for override in tiny for arg in ("--override", override)])
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary" / "summary.json").read_text())
    assert summary["preset"] == "smollm2"
    assert {task: result["preset"] for task, result in summary["tasks"].items()} == {
        "memorize": "smollm2_memorize", "qa1": "smollm2_qa1"}
    assert all(set(result["lengths"]) == {"1", "2"} and result["lengths"]["2"]["samples"] == 8
               for result in summary["tasks"].values())
    config = (seed_folder(out, "qa1", 0) / "train" / "config.yaml").read_text()
    assert "head: generate" in config and "name: qa1" in config  # the answer generated as text
