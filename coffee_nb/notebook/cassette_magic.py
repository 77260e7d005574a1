"""``%llm_cassette``: record and replay every model call of this notebook (see ``coffee_nb.replay._cassette``)."""

from __future__ import annotations

import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from coffee_nb.replay._cassette import MODES, CassetteError, active, use_cassette


@magics_class
class CassetteMagics(Magics):
    @line_magic
    def llm_cassette(self, line: str) -> str:
        """Record or replay the notebook's model calls: ``%llm_cassette record|replay|strict|off [PATH]``.

        ``record`` calls as usual and keeps every answer; ``replay`` answers from the cassette when the
        request matches (else calls and records); ``strict`` answers only from it (a miss is an error and
        nothing is sent: how CI runs a notebook with no keys); ``off`` stops. Replays cost $0. PATH
        defaults to ``<notebook>.llm-cassette.jsonl`` beside the notebook. With no arguments: the
        cassette in use.
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"could not read {line!r} ({exc}); quote a path that contains spaces") from None
        if not words:
            tape = active()
            return "no cassette (%llm_cassette record to start one)" if tape is None else repr(tape)
        if len(words) > 2 or words[0] not in MODES:
            raise UsageError(f"usage: %llm_cassette {'|'.join(MODES)} [PATH], got {line!r}")
        try:
            tape = use_cassette(words[0], words[1] if len(words) == 2 else None)
        except CassetteError as exc:
            raise UsageError(str(exc)) from None
        if tape is None:
            return "cassette off"
        return f"cassette {tape.mode}: {tape.path} ({len(tape)} entries)"
