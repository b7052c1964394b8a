"""Transliteration: uroman romanization, rule tables and the per-word origin classifier."""
