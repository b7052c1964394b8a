"""Fine-tuning data: SentencePiece ids packed for causal LM, NER windows aligned to subwords."""
