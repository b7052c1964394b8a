"""Lexical-distance filter: keep rows lexically close to the target language."""
