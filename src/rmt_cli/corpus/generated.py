"""Training noise generated from the training noise: a Markov chain over its tokens.

Each next token is drawn from the tokens that follow the last `context` tokens somewhere in the training split, as
often as they follow them there, so the text reads like its source phrase by phrase while its passages are new.
With context 3 and MiniLM's WordPiece tokens (Austen's four training novels and Shakespeare's plays), about three
quarters of the generated 8-token runs occur nowhere in the source; with context 4, a quarter.

Why: the offline corpora hold about 2M training tokens, which a long-input curriculum reads about a hundred times
over, so a memory can come to rely on noise it knows by heart and lose its fact on text it has not seen (a seed
scoring 97% at 512 segments with noise from its training novels and 60% with the held-out ones). Generated noise
is new text at every read; validation and test noise stay the held-out documents.

The chain walks positions of the source, read as a ring: from position q (whose token it emitted) it moves to a
position drawn uniformly from those whose preceding `context` tokens are the tokens ending at q, and emits that
position's token. A generated sentence starts wherever the chain emits a token that starts a sentence in the
source. Many chains run side by side (vectorised) and their text is concatenated; each begins at a sentence start.
"""

from __future__ import annotations

import numpy as np

from rmt_cli.corpus.tokens import TokenCorpus

GENERATOR_FORMAT = 2  # in the token cache's key: bump when the generated text, or what the cache keeps of it, changes
STREAMS = 4096  # chains run side by side; each one's text is a run of about n_tokens / STREAMS tokens


def context_ids(tokens: np.ndarray, context: int) -> np.ndarray:
    """Per position i, an id of the `context` tokens before it, reading the tokens as a ring (position 0 follows the
    last): equal ids, equal tokens."""
    ring = np.concatenate([tokens[len(tokens) - context:], tokens])
    windows = np.lib.stride_tricks.sliding_window_view(ring, context)[: len(tokens)]
    return np.unique(windows, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def generate(source: TokenCorpus, n_tokens: int, context: int, seed: int = 0,
             streams: int = STREAMS) -> tuple[np.ndarray, np.ndarray]:
    """`n_tokens` tokens generated from `source` by `streams` chains (int32; chain i's run is the i-th of equal
    parts, the last one cut short) and the offsets where their sentences start."""
    tokens = source.tokens
    n = len(tokens)
    ids = context_ids(tokens, context)
    by_context = np.argsort(ids, kind="stable")  # positions grouped by the context before them
    sorted_ids = ids[by_context]
    is_start = np.zeros(n, dtype=bool)
    is_start[source.sentence_starts] = True
    starts = source.sentence_starts

    rng = np.random.default_rng(seed)
    streams = max(1, min(streams, n_tokens))
    steps = -(-n_tokens // streams)
    positions = np.empty((streams, steps), dtype=np.int64)
    q = rng.choice(starts, size=streams)
    for step in range(steps):
        positions[:, step] = q
        after = ids[(q + 1) % n]  # the context the next token must follow (the source read as a ring)
        lo = np.searchsorted(sorted_ids, after, side="left")
        hi = np.searchsorted(sorted_ids, after, side="right")
        q = by_context[lo + (rng.random(streams) * (hi - lo)).astype(np.int64)]
    flat = positions.reshape(-1)[:n_tokens]
    sentence_starts = np.flatnonzero(is_start[flat])
    return tokens[flat].astype(np.int32), sentence_starts.astype(np.int64)


def with_generated(source: TokenCorpus, n_tokens: int, context: int, seed: int = 0,
                   streams: int = STREAMS) -> TokenCorpus:
    """`source` followed by `n_tokens` generated from it, as one more document (its offset: `generated_from`)."""
    generated, starts = generate(source, n_tokens, context, seed, streams)
    name = f"generated from the above ({context}-token context)"
    return TokenCorpus(np.concatenate([source.tokens, generated]),
                       np.concatenate([source.sentence_starts, starts + len(source.tokens)]),
                       (*source.documents, name), generated_from=len(source.tokens))
