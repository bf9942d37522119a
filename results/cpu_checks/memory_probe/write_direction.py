"""Can one segment's write learn to keep which way its facts point, when asked directly?

The probe's stories (probe.py), but the model is trained: a linear head reads the written memory (memory x hidden,
flattened) and names the north/east end of the story's axis; the loss flows through the write into the whole
backbone, as a memory-decoding objective would. Printed: the held-out accuracy (1,000 stories) as training goes.
A coin toss between the two places that are not shared is 50%.

    python results/cpu_checks/memory_probe/write_direction.py RUN_FOLDER [--steps 600] [--lr 1e-4]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch import nn

import rmt_cli
from rmt_cli.engine import content_length
from probe import PLACES, segment_tokens, story
from rmt_cli.austen import default_austen_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a trained run folder (its last stage's best weights)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--segment-length", type=int, default=64, help="positions per segment, as trained")
    args = parser.parse_args()
    torch.manual_seed(0)
    run = rmt_cli.load_run(args.run, device="cpu")
    model, tokenizer = run.model, run.tokenizer
    text = (default_austen_dir() / "persuasion.txt").read_text()[:400_000]
    noise = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    rng = np.random.default_rng(0)
    length = content_length(args.segment_length, model.memory_size, model.layout)

    def draw(n):
        stories = [story(rng) for _ in range(n)]
        tokens = torch.tensor([segment_tokens(rng, tokenizer, noise, facts, length)
                               for facts, _, _ in stories])
        return tokens, torch.tensor([a for _, _, a in stories])

    held_tokens, held_target = draw(1000)
    head = nn.Linear(model.memory_size * model.initial_memory.shape[-1], len(PLACES))

    def north_east_logits(tokens):  # the head on the memory vectors one segment writes from the initial memory
        written = model.read_segment(model.start_memory(len(tokens)), tokens)[0][:, :model.memory_size]
        return head(written.flatten(1))

    optimizer = torch.optim.AdamW([{"params": model.parameters(), "lr": args.lr},
                                   {"params": head.parameters(), "lr": 1e-3}], weight_decay=1e-3)
    start = time.time()
    for step in range(1, args.steps + 1):
        model.train()
        tokens, target = draw(args.batch)
        loss = nn.functional.cross_entropy(north_east_logits(tokens), target)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0:
            model.eval()
            with torch.inference_mode():
                right = 0
                for i in range(0, len(held_tokens), 100):
                    predicted = north_east_logits(held_tokens[i:i + 100]).argmax(-1)
                    right += (predicted == held_target[i:i + 100]).sum().item()
            print(f"step {step}: loss {loss.item():.3f}, held-out north/east end {right / len(held_tokens):.3f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
