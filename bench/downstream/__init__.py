"""Downstream benchmark (translate-train and translate-test) on the synthetic pair: see
``bench.downstream.harness``; run it as ``python -m bench.downstream``.

Modules: ``harness`` (the benchmark), ``jobs`` (inputs, the ``xlcorpus`` commands,
their outputs), ``tagger`` (the small BiLSTM token classifier: training, prediction),
``scoring`` (seqeval strict span F1, tags <-> spans), ``predictor`` (translate-test's
English tagger for ``xlcorpus project --predictor``), ``train_reverse_mt`` (recipe of
the xx -> en model ``synth-xx-en``).
"""
