"""Words: the tokenizer and the English stop words every lexical part of hippograph shares."""

from __future__ import annotations

import re

#: A word: a run of letters, digits or underscores (Unicode-aware).
WORD = re.compile(r"\w+", re.UNICODE)

#: Words that match most texts: they slow full-text search down and blur BM25, MinHash and entity matching.
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "did", "do", "does", "for", "from", "had", "has",
    "have", "he", "her", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or",
    "our", "she", "so", "that", "the", "their", "them", "they", "this", "to", "was", "we", "were", "what", "when",
    "where", "which", "who", "whom", "why", "will", "with", "you", "your",
})
