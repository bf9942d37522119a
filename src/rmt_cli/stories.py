"""Where a task's stories come from: the generators by name, their answer labels, and fixed pools of stories."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rmt_cli import world
from rmt_cli.facts import LOCATIONS, Story, single_supporting_fact, two_argument_relations

GENERATORS = {
    "qa1": single_supporting_fact,  # the paper's memorize/detect: one fact
    "qa1-world": world.single_supporting_fact,  # bAbI's qa1: 2-10 moves
    "qa2": world.two_supporting_facts,
    "qa3": world.three_supporting_facts,
    "qa4": two_argument_relations,
    "qa5": world.three_argument_relations,
}
# The answer vocabulary of each generator: the labels of its classification head, in the head's order.
LABELS = {
    "qa1": LOCATIONS,
    "qa1-world": LOCATIONS,
    "qa2": LOCATIONS,
    "qa3": LOCATIONS,
    "qa4": LOCATIONS,
    "qa5": world.GIVERS + world.OBJECTS,
}
# Generators whose facts may appear in any order (qa4's two relations); other stories keep their order in the input.
ORDER_FREE = frozenset({"qa4"})


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one pool per file and split
class StoryPool:
    """A fixed list of stories used like a generator: each draw picks one uniformly."""

    stories: tuple[Story, ...]

    def __call__(self, rng: np.random.Generator) -> Story:
        return self.stories[rng.integers(len(self.stories))]
