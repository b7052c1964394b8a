"""LLM-assisted annotation: tasks, validation, voting and the stage."""
