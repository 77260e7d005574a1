"""One error taxonomy: provider, SDK and transport exceptions mapped to an ``ErrorClass`` (``classify``), and
the errors a call raises (``AllModelsFailedError``, ``BudgetExceededError``...). The root ``CoffeeError`` and
``ConfigError`` and the redaction they use live one layer down in ``_shared`` (every layer raises them);
``_errors`` re-exports them, so ``from coffee_nb.errors._errors import ConfigError`` still works.

May import: ``coffee_nb._shared``. Must never import the invoker, the session, jobs or the notebook.
"""
