"""Data curation (Dolma 3 style): documents, recipes of steps, executors, tokenize, mix, demo corpus.

Heavy modules import lazily; use ``olmoflow.data.curate.curate``, ``olmoflow.data.tokenize.tokenize``,
``olmoflow.data.mix.mix`` and ``olmoflow.data.demo.build_demo_corpus``.
"""
