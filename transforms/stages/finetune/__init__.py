"""Fine-tuning data: SentencePiece ids packed for causal LM, NER windows aligned to subwords.

tokenizer (train, load, fertility), ner (window alignment), pack (packing), mix
(language mixing): the pure core. stage: the ``PackSequences`` and ``AlignNer`` stages.
passes: their Beam parts.
"""
