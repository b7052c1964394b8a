"""The parts every stage shares: the stage interface, its Beam adapter, the
kept / rejected / dead-letter accounting and the per-worker model holder."""
