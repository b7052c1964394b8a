"""Exact and MinHash near-duplicate removal (the ``dedup`` stage)."""
