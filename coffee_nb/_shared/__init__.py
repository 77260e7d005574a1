"""Small shared pieces every layer reads: the per-attempt ``CallRecord`` (the spine's common language) and
its sinks, global state in one place (``_config``), paths, validation, formatting, finish reasons, the
pooled HTTP clients.

May import: the standard library, langchain-core, httpx, platformdirs. Must never import another
coffee_nb folder: everything else stands on this.
"""
