"""NER label projection into a machine translation: constrained, marker and alignment methods."""
