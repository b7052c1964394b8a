"""Model and service backends: fastText LID model files, CTranslate2 translation, LLM HTTP client, caches."""
