"""Unicode helpers shared by stages: scripts of text, word tokens."""
