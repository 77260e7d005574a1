"""The invoker: ``AutoPicker`` (a LangChain chat model) and everything one call does. ``_drivers`` do the
sync/async I/O (``_hedge`` races); ``_attempt`` (the ``Call``) prepares each attempt and settles how it
ended; ``_plan`` decides what comes next (routing, retries, breakers) and ``_spend`` what it may cost and
what it cost (reservations, settlement, the records); neither does I/O. ``_streams`` and ``_summary`` are
what a caller reads back; ``_models``/``_policy``/``_health`` are the candidates, the policy table and their
health.

May import: ``_shared``, ``errors``, ``pricing``, ``replay``, ``providers``, ``budget`` and ``metrics`` (through
their protocols). Must never import ``session``, ``jobs``, ``comparison``, ``sandbox`` or ``notebook``.
"""
