"""Unicode and language helpers shared by stages: scripts of text, language codes and the scripts languages are written in, word tokens."""
