"""The notebook session: default models, budget, metrics, cache and cassette in one object with
``configure()`` / ``reset()``, ``ask()``, the answers it returns, model aliases and the dry run.

May import: ``invoke`` and everything below it. Must never import ``notebook`` (IPython is the notebook's).
"""
