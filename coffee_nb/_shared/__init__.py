"""Small shared pieces every layer reads: the per-attempt ``CallRecord`` (the spine's common language) and
its sinks, global state in one place (``_config``, generic over what it holds: it names no higher type),
redaction and the root exceptions (``CoffeeError``, ``ConfigError``: every layer raises them, and their text
never holds a key), paths, validation, formatting, finish reasons, the pooled HTTP clients.

May import: the standard library, langchain-core, httpx, platformdirs. Must never import another
coffee_nb folder, not even under ``TYPE_CHECKING``: everything else stands on this.
"""
