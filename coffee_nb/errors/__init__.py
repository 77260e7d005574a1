"""One error taxonomy: provider, SDK and transport exceptions mapped to an ``ErrorClass`` (``classify``), the
errors coffee_nb raises, and redaction, so no key reaches a message, an exception or a log.

May import: ``coffee_nb._shared``. Must never import the invoker, the session, jobs or the notebook.
"""
