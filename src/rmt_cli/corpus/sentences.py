"""Sentence splitting: noise windows begin at sentence starts, so this decides where a sample's noise may begin.

Changing how text splits changes every cached corpus: bump cache._CACHE_FORMAT with it.
"""

from __future__ import annotations

import re

# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by whitespace, except after
# common titles, so "Mr. Bennet replied." stays one sentence.
_SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)([.!?]+[\"'”’)\]]*)\s+")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace collapsed; blank lines always end a sentence."""
    sentences: list[str] = []
    for paragraph in _BLANK_LINE.split(text):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            sentences += _SENTENCE_END.sub(r"\1\n", paragraph).split("\n")
    return sentences
