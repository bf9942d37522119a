import re
from pathlib import Path

import pytest
import torch

import rmt_cli
from rmt_cli.errors import RuntimeFailure

README = Path(__file__).resolve().parents[1] / "README.md"
STORY = "Mary went to the garden. " + "The rain had stopped and the lane was quiet again. " * 30


def readme_example() -> str:
    text = README.read_text()
    start = text.index("<!-- api-example")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_the_readme_example_runs(smoke_run_dir, capsys):
    code = readme_example()
    code, replaced = re.subn(r'^RUN = ".*?"', f"RUN = {str(smoke_run_dir)!r}", code, flags=re.M)
    assert replaced == 1
    exec(compile(code, "README.md", "exec"), {})
    labels, streamed, shapes = capsys.readouterr().out.strip().splitlines()
    answer = labels.rsplit(")", 1)[1].strip()
    assert answer in ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
    assert streamed.endswith(f"segments, memory (1, 10, 32) -> {answer}")
    assert shapes == "(1, 2) (1, 10, 384)"


def test_streaming_reads_what_the_engine_reads(smoke_run_dir):
    run = rmt_cli.load_run(smoke_run_dir, device="cpu")
    segments = run.segments(STORY, "Where is Mary?")
    question = run.tokenizer("Where is Mary?", add_special_tokens=False)["input_ids"]
    assert segments[-1][0, -len(question):].tolist() == question
    assert all(s.shape == (1, run.content_length) for s in segments[1:]) and segments[0].shape[1] <= run.content_length
    memory = run.start_memory()
    for segment in segments[:-1]:
        memory = run.read(memory, segment)
    with torch.inference_mode():
        whole = run.model(segments[:-1])
        last = run.model(segments, memory=None)
    assert torch.allclose(memory, whole.memory)
    assert run.answer(memory, segments[-1]) == run.task.labels[int(last.logits.argmax())] == \
        run.predict(STORY, "Where is Mary?")


def test_wrap_builds_a_generating_decoder_around_a_causal_lm(tokenizer):
    from conftest import tiny_decoder

    run = rmt_cli.wrap(tiny_decoder("tiny-gpt2"), tokenizer, labels=["kitchen", "garden"], memory_size=3,
                       segment_length=64, head="generate")
    assert run.model.layout == "decoder" and run.content_length == 58
    answer = run.predict(STORY, "Where is Mary?")
    assert isinstance(answer, str)  # untrained: a label, or whatever text it generates


def test_wrap_refuses_a_segment_the_backbone_cannot_hold(tokenizer):
    from conftest import tiny_bert

    with pytest.raises(ValueError, match="segment_length=1024 does not fit 10 memory vectors"):
        rmt_cli.wrap(tiny_bert(), tokenizer, labels=["a", "b"], segment_length=1024)


def test_load_run_names_a_missing_run(tmp_path):
    from rmt_cli.checkpoint import CheckpointNotFound

    with pytest.raises(CheckpointNotFound, match="does not exist$") as error:
        rmt_cli.load_run(tmp_path / "nothing", device="cpu")
    assert isinstance(error.value, RuntimeFailure) and error.value.path == tmp_path / "nothing"
    assert "rmt train" not in str(error.value)  # the command line adds the command that writes a run
