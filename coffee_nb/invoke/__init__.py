"""The invoker: ``AutoPicker`` (a LangChain chat model) and everything one call does. ``_plan`` decides (no
I/O), ``_attempt`` runs an attempt, ``_drivers`` do the sync/async I/O, ``_hedge`` races, ``_streams`` and
``_summary`` are what a caller reads back; ``_models``/``_policy``/``_health`` are the candidates, the policy
table and their health.

May import: ``_shared``, ``errors``, ``pricing``, ``replay``, ``providers``, ``budget`` and ``metrics`` (through
their protocols). Must never import ``session``, ``jobs``, ``compare`` or ``notebook``.
"""
