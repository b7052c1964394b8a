"""Document quality heuristics (the ``quality`` stage)."""
