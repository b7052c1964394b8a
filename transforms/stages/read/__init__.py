"""Readers: documents (JSONL / text / Parquet) for the corpus job, NER examples for projection."""
