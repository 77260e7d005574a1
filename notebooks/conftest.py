"""nbval runs of the tutorials: a fresh coffee_nb data dir (ledger, cache) per run. The real-provider
notebook replays its committed cassette in strict mode, so it needs no keys."""

from __future__ import annotations

import os
import tempfile

_DATA = tempfile.mkdtemp(prefix="coffee_nb-nbval-")
os.environ["COFFEE_NB_DATA_DIR"] = _DATA  # kernels started by nbval inherit it
