"""Noise text: natural-language filler that facts are hidden in, tokenised once and cached.

A corpus is split by document into train and eval parts (validation and test draw from eval), then
every sentence is tokenised and the token ids are concatenated, remembering where each sentence
starts. Samples are later cut from these arrays as windows that begin at a sentence start.

One job per module:

    load              load_noise: picks the source named by noise.source and goes through the cache
    source_austen     noise=austen: the Austen novels, whole novels held out for evaluation
    source_files      noise=files: the user's .txt files, split by eval_fraction
    source_hub        noise.source=hub (noise=pg19): documents streamed from a Hugging Face dataset
    source_synthetic  noise=synthetic: random sentences of plain words, generated from a seed
    generated         noise.generated_training_tokens: training noise generated from the training text (Markov)
    documents         text files read as UTF-8 and tokenised into train and eval splits
    sentences         sentence splitting
    tokens            TokenCorpus, NoiseSplits, and text tokenised into a corpus with its sentence starts
    sizes             the minimum size of each split
    cache             the on-disk token cache and its key

The names below are the package's API; import them from `rmt_cli.corpus`.
"""

from rmt_cli.corpus.load import SOURCES, UnknownNoiseSource, load_noise
from rmt_cli.corpus.sentences import split_sentences
from rmt_cli.corpus.sizes import MIN_SPLIT_TOKENS, CorpusTooSmall
from rmt_cli.corpus.source_austen import (AustenCorpusMissing, HeldOutInTraining, NoTrainingDocuments,
                                          UnknownEvalDocuments)
from rmt_cli.corpus.source_files import (BadEvalFraction, CorpusNotDownloaded, NoiseFilesMissing, NoNoisePaths,
                                         NotARegularFile)
from rmt_cli.corpus.source_hub import HubUnreachable, NoTextField
from rmt_cli.corpus.source_synthetic import NoPlainWords
from rmt_cli.corpus.tokens import NoiseSplits, TokenCorpus, tokenize_documents

__all__ = [
    "MIN_SPLIT_TOKENS", "SOURCES", "AustenCorpusMissing", "BadEvalFraction", "CorpusNotDownloaded", "CorpusTooSmall",
    "HeldOutInTraining", "HubUnreachable", "NoiseFilesMissing", "NoiseSplits", "NoNoisePaths", "NoPlainWords",
    "NoTextField", "NotARegularFile", "NoTrainingDocuments", "TokenCorpus", "UnknownEvalDocuments",
    "UnknownNoiseSource", "load_noise", "split_sentences", "tokenize_documents",
]
