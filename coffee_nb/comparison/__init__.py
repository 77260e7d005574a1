"""Comparing models: one prompt set over several models side by side (``coffee_nb.compare``), its projected
cost before it runs, and an LLM judge.

May import: ``invoke`` and everything below it. Must never import ``notebook`` (its views live there).
"""
