"""trainer.ema_decay: an exponential moving average of the trained weights, which validation reads and a stage's best
checkpoints keep.

Recurrent gradients spike, and one step near a stage's peak learning rate can undo what the stage had learnt
(results/paper/README.md); an average over the last 1 / (1 - decay) steps moves by only (1 - decay) of such a step.
The optimizer still trains the model's own weights; the average follows them after every step it takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """The average of a model's trainable weights, begun from the weights it has now."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        # the trainable weights' storage, without autograd: the optimizer updates it in place
        self.weights = [p.detach() for p in model.parameters() if p.requires_grad]
        self.average = [p.clone() for p in self.weights]

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step: average ← decay · average + (1 − decay) · weights."""
        torch._foreach_lerp_(self.average, self.weights, 1.0 - self.decay)

    @torch.no_grad()
    def restart(self) -> None:
        """Begin the average again from the weights the model has now."""
        torch._foreach_copy_(self.average, self.weights)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block (to validate and save them), its trained ones
        again after it."""
        trained = [p.clone() for p in self.weights]
        with torch.no_grad():
            torch._foreach_copy_(self.weights, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.weights, trained)

    def state_dict(self) -> dict:
        return {"average": [a.detach().cpu() for a in self.average]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for average, saved in zip(self.average, state["average"], strict=True):
                average.copy_(saved)
