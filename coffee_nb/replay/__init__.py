"""Have we seen this exact request? The per-user SQLite response cache and the per-notebook cassette file,
stores behind one question; replays are records with ``replayed`` set and $0 spent.

May import: ``coffee_nb._shared``, ``coffee_nb.errors``. Must never import the invoker (it asks them) or anything
above it.
"""
