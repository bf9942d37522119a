"""trainer.memory_map: the memory asked, after every segment, for the map of the relations read so far."""

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_bert
from helpers.cli import rmt

from rmt_cli import memory_map as mm
from rmt_cli.batches import BatchPlan
from rmt_cli.engine import RecurrentMemory
from rmt_cli.loggers import WALL_CLOCK
from rmt_cli.facts import LOCATIONS, Story
from rmt_cli.samples import PlacedFact, Sample


def place(name):
    return LOCATIONS.index(name)


def test_a_relation_puts_each_place_in_the_other_ones_direction():
    assert sorted(mm.relation_entries("The bedroom is west of the kitchen.")) == sorted(
        [(mm.key("kitchen", "west"), place("bedroom")), (mm.key("bedroom", "east"), place("kitchen"))])
    assert mm.relation_entries("Mary went back to the kitchen.") == []


def story_sample(n_segments, fact_segments):
    """Two facts of one story, the first one in fact_segments[0], the second one in fact_segments[1]."""
    story = Story(facts=("The bedroom is west of the kitchen.", "The garden is north of the bedroom."),
                  question="What is west of the kitchen?", answer="bedroom")
    facts = tuple(PlacedFact(segment, 0, np.array([1]), index) for index, segment in enumerate(fact_segments))
    return Sample(np.zeros(n_segments, dtype=np.int64), facts, np.array([2]), place("bedroom"), story)


def test_the_map_after_each_segment_holds_the_facts_read_up_to_it():
    targets = mm.map_after_each_segment(story_sample(4, (2, 0)))  # the story's second fact comes first
    assert (targets[0] != mm.UNSET).sum() == 2 and targets[0, mm.key("bedroom", "north")] == place("garden")
    assert (targets[1] == targets[0]).all()
    assert (targets[2] != mm.UNSET).sum() == 4 and targets[2, mm.key("kitchen", "west")] == place("bedroom")
    assert (targets[3] == targets[2]).all()
    untold = Sample(np.zeros(2, dtype=np.int64), (), np.array([2]), 0)
    assert (mm.map_after_each_segment(untold) == mm.UNSET).all()


def test_the_north_east_end_of_every_qa4_shape():
    """qa4's three shapes over a line garden - bedroom - kitchen running north (and the same line written with
    east and west): shared place, chain (both ways round), shared subject; one fact alone names its own end."""
    north = {"shared place": [("garden", "north", "bedroom"), ("kitchen", "south", "bedroom")],
             "chain": [("garden", "north", "bedroom"), ("bedroom", "north", "kitchen")],
             "chain backwards": [("kitchen", "south", "bedroom"), ("bedroom", "south", "garden")],
             "shared subject": [("bedroom", "south", "garden"), ("bedroom", "north", "kitchen")]}
    for shape, relations in north.items():
        for order in (relations, relations[::-1]):
            assert mm.north_east_end(order) == place("garden"), (shape, order)
    east = [("garden", "east", "bedroom"), ("kitchen", "west", "bedroom")]
    assert mm.north_east_end(east) == place("garden")
    assert mm.north_east_end([("kitchen", "west", "bedroom")]) == place("bedroom")
    assert mm.north_east_end([("kitchen", "north", "bedroom")]) == place("kitchen")


def test_the_ends_target_follows_the_facts_read_so_far():
    """story_sample's facts: the bedroom is west of the kitchen; the garden is north of the bedroom. One fact read:
    its own northern or eastern place; both: the end the two relations' places give (placed as they come)."""
    targets = mm.map_after_each_segment(story_sample(4, (2, 0)), target="ends")
    assert targets.shape == (4, 1)
    assert targets[0, 0] == targets[1, 0] == place("garden")  # "the garden is north of the bedroom" alone
    assert targets[2, 0] == targets[3, 0] == place("garden")
    first_only = mm.map_after_each_segment(story_sample(3, (0, 2)), target="ends")
    assert first_only[0, 0] == first_only[1, 0] == place("kitchen")  # east of the bedroom
    assert (mm.map_after_each_segment(story_sample(2, (1, 1)), target="ends")[0] == mm.UNSET).all()


def test_the_answer_target_asks_for_the_label_from_the_facts_segment_on():
    one_fact = Sample(np.zeros(4, dtype=np.int64), (PlacedFact(1, 0, np.array([1])),), np.array([2]), 3)
    assert mm.map_after_each_segment(one_fact, target="answer")[:, 0].tolist() == [mm.UNSET, 3, 3, 3]
    no_fact = Sample(np.zeros(2, dtype=np.int64), (), np.array([2]), 3)
    assert (mm.map_after_each_segment(no_fact, target="answer") == mm.UNSET).all()
    layer = mm.MemoryMap(memory_size=2, hidden=4, target="answer", labels=9)
    assert layer(torch.randn(5, 2, 4)).shape == (5, 1, 9)


def test_the_ends_read_and_the_hidden_read_give_the_loss_of_their_logits():
    torch.manual_seed(0)
    sample = story_sample(2, (0, 1))
    plan = BatchPlan.right_aligned([sample])
    written = [(0, torch.randn(1, 2, 4)), (1, torch.randn(1, 2, 4))]
    for target, read_hidden in (("ends", 0), ("ends", 8), ("relations", 8)):
        layer = mm.MemoryMap(memory_size=2, hidden=4, target=target, read_hidden=read_hidden)
        logits = torch.cat([layer(memory) for _, memory in written])
        entries = 1 if target == "ends" else mm.KEYS
        assert logits.shape == (2, entries, len(LOCATIONS))
        targets = torch.from_numpy(mm.map_after_each_segment(sample, target)).flatten()
        expected = F.cross_entropy(logits.flatten(0, 1), targets, ignore_index=mm.UNSET)
        assert torch.allclose(layer.loss(written, plan), expected)
    with pytest.raises(ValueError, match="relations, ends, answer"):
        mm.MemoryMap(memory_size=2, hidden=4, target="places")


def test_the_loss_asks_each_row_for_its_own_segments_map():
    """A right-aligned batch of a 3-segment and a 1-segment sample: at step t the long row has read t + 1 segments
    and the short one starts at the last step; the loss is the cross-entropy of exactly those maps."""
    torch.manual_seed(0)
    long, short = story_sample(3, (1, 2)), story_sample(1, (0, 0))
    plan = BatchPlan.right_aligned([short, long])
    assert plan.samples[0] is long
    layer = mm.MemoryMap(memory_size=2, hidden=4)
    written = [(0, torch.randn(1, 2, 4)), (1, torch.randn(1, 2, 4)), (2, torch.randn(2, 2, 4))]
    expected_targets = [mm.map_after_each_segment(long)[0][None], mm.map_after_each_segment(long)[1][None],
                        np.stack([mm.map_after_each_segment(long)[2], mm.map_after_each_segment(short)[0]])]
    logits = torch.cat([layer(memory) for _, memory in written]).flatten(0, 1)
    target = torch.from_numpy(np.concatenate(expected_targets)).flatten()
    expected = F.cross_entropy(logits, target, ignore_index=mm.UNSET)
    assert torch.allclose(layer.loss(written, plan), expected)
    nothing_read = layer.loss(written[:1], plan)  # the long row's first segment holds no fact
    assert nothing_read.item() == 0.0 and nothing_read.requires_grad


def test_a_memory_that_keeps_the_direction_can_be_read_to_a_low_loss_and_one_that_does_not_cannot():
    """Memories that encode which place is west of the kitchen train the layer to near zero loss; memories that
    only say which places the story names (the same for both orders) leave the kitchen's entries a coin toss."""
    torch.manual_seed(0)
    directed, undirected, plans = [], [], []
    for west in ("bedroom", "garden") * 16:
        other = "garden" if west == "bedroom" else "bedroom"
        story = Story(facts=(f"The {west} is west of the kitchen.", f"The {other} is east of the kitchen."),
                      question="What is west of the kitchen?", answer=west)
        sample = Sample(np.zeros(1, dtype=np.int64), (PlacedFact(0, 0, np.array([1]), 0),
                                                      PlacedFact(0, 0, np.array([1]), 1)), np.array([2]), 0, story)
        plans.append(BatchPlan.right_aligned([sample]))
        code = torch.zeros(1, 1, 4)
        code[0, 0, place(west) % 4] = 1.0
        directed.append(code)
        undirected.append(torch.ones(1, 1, 4))
    losses = {}
    for name, memories in (("directed", directed), ("undirected", undirected)):
        layer = mm.MemoryMap(memory_size=1, hidden=4)
        optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
        for _ in range(200):
            pairs = zip(memories, plans, strict=True)
            loss = sum(layer.loss([(0, memory)], plan) for memory, plan in pairs) / len(plans)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses[name] = loss.item()
    assert losses["directed"] < 0.05
    assert losses["undirected"] > 0.3  # ln 2 on the kitchen's two entries of four


def test_the_engine_hands_the_hook_every_memory_that_autograd_records(tokenizer):
    torch.manual_seed(0)
    model = RecurrentMemory(tiny_bert(), memory_size=3, num_labels=6, cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id, dropout=0.0)
    steps = [torch.randint(1000, 30000, (rows, 10)) for rows in (1, 2, 2)]
    seen = []
    out = model(steps, memory_hook=lambda step, memory: seen.append((step, memory)))
    assert [(step, memory.shape[0]) for step, memory in seen] == [(0, 1), (1, 2), (2, 2)]
    assert torch.equal(seen[-1][1], out.memory) and all(memory.requires_grad for _, memory in seen)
    seen.clear()
    model(steps, grad_steps=1, n_steps=3, memory_hook=lambda step, memory: seen.append((step, memory)))
    assert [step for step, _ in seen] == [2]  # truncated BPTT: the steps before the window are not recorded


def mapped_model(tokenizer):
    """A tiny model, an `ends` map layer over its memory, and a right-aligned batch of two stories (two and three
    segments) with its step tokens: what the map-loss gradient tests read."""
    torch.manual_seed(0)
    model = RecurrentMemory(tiny_bert(), memory_size=3, num_labels=6, cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id, dropout=0.0)
    layer = mm.MemoryMap(memory_size=3, hidden=model.initial_memory.shape[-1], target="ends")
    plan = BatchPlan.right_aligned([story_sample(2, (0, 0)), story_sample(3, (0, 1))])
    steps = [torch.randint(1000, 30000, (rows, 10)) for rows in (1, 2, 2)]
    return model, layer, plan, steps


def test_the_map_loss_has_the_same_gradients_with_recomputed_segments(tokenizer):
    """A stage with checkpoint_segments hands the hook the memories its checkpointed steps return: the map's loss
    and its gradients in the backbone are those of the plain forward, with either style of checkpoint."""
    model, layer, plan, steps = mapped_model(tokenizer)
    results = []
    for checkpointed, reentrant in ((False, False), (True, False), (True, True)):
        model.zero_grad()
        model.reentrant_checkpoints = reentrant
        written: list = []
        model(steps, checkpoint_segments=checkpointed, memory_hook=lambda *call, into=written: into.append(call))
        loss = layer.loss(written, plan)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (plain_loss, plain_grads), *recomputed = results
    for loss, grads in recomputed:  # non-reentrant, then reentrant checkpoints
        assert torch.allclose(plain_loss, loss) and len(plain_grads) == len(grads) > 0
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain_grads, grads, strict=True))


def test_the_map_loss_reaches_the_fp32_weights_through_the_bf16_working_copy(tokenizer):
    """trainer.compute_dtype=bf16: the copy writes bf16 memories, the map layer (fp32) reads them, and the map's
    gradients pass back through the copy to the fp32 weights: close to the fp32 path's, recomputed segments too."""
    from rmt_cli.working_copy import WorkingCopy

    model, layer, plan, steps = mapped_model(tokenizer)
    model.reentrant_checkpoints = True
    copy = WorkingCopy(model)

    def map_gradients(runner):
        model.zero_grad()
        layer.zero_grad()
        written: list = []
        runner(steps, checkpoint_segments=True, memory_hook=lambda *call: written.append(call))
        layer.loss(written, plan).backward()
        if runner is not model:
            copy.pass_gradients()
        return torch.cat([p.grad.flatten() for p in [*model.parameters(), *layer.parameters()] if p.grad is not None])

    fp32 = map_gradients(model)
    bf16 = map_gradients(copy.refreshed())
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}
    assert fp32.shape == bf16.shape and fp32.norm() > 0
    assert (bf16 - fp32).norm() / fp32.norm() < 0.05


def metrics(run):
    """metrics.jsonl without wall-clock fields, which differ between any two runs."""
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_reasoning_run_logs_the_map_loss_and_saves_the_layer_only_for_its_resume(tmp_path):
    from safetensors.torch import load_file

    run = tmp_path / "run"
    result = rmt("train", "experiment=smoke", "task=reasoning", "trainer.memory_map=0.5", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr
    train = [row for row in metrics(run) if row.get("kind") == "train"]
    assert train and all(row["map_loss"] >= 0 for row in train)
    weights = load_file(run / "checkpoints" / "stage2-best" / "model.safetensors")
    assert not any(name.startswith("read") or "memory_map" in name for name in weights)
    before_last = sorted((run / "checkpoints").glob("last-*"))[-2]  # mid-curriculum (the last one: finished)
    state = torch.load(before_last / "trainer.pt", weights_only=True)
    assert state["memory_map"].keys() == {"read.weight", "read.bias"}
    # a run killed after that resume point continues from it with the layer as saved: the same metrics
    shutil.rmtree(sorted((run / "checkpoints").glob("last-*"))[-1])
    before = metrics(run)
    again = rmt("train", "experiment=smoke", "task=reasoning", "trainer.memory_map=0.5",
                f"hydra.run.dir={run}")
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    assert metrics(run) == before


def test_a_reasoning_run_trains_with_the_ends_target_through_a_hidden_read(tmp_path):
    run = tmp_path / "run"
    result = rmt("train", "experiment=smoke", "task=reasoning", "trainer.memory_map=1.0",
                 "trainer.memory_map_target=ends", "trainer.memory_map_hidden=16", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr
    assert all(row["map_loss"] >= 0 for row in metrics(run) if row.get("kind") == "train")
    mid_curriculum = sorted((run / "checkpoints").glob("last-*"))[-2]  # the last one (finished) keeps no optimizer
    state = torch.load(mid_curriculum / "trainer.pt", weights_only=True)
    assert {name: tuple(value.shape) for name, value in state["memory_map"].items()
            if name.endswith("weight")}["read.2.weight"] == (len(LOCATIONS), 16)


def test_a_detect_run_trains_with_the_answer_target(tmp_path):
    run = tmp_path / "run"
    result = rmt("train", "experiment=smoke", "task=detect", "trainer.memory_map=1.0",
                 "trainer.memory_map_target=answer", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr
    losses = [row["map_loss"] for row in metrics(run) if row.get("kind") == "train"]
    assert losses and all(loss >= 0 for loss in losses) and any(loss > 0 for loss in losses)

