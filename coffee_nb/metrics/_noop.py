"""NoOpMetrics: a sink that does nothing, for when metrics must cost (almost) nothing."""

from __future__ import annotations

from typing import Any

__all__ = ["NoOpMetrics"]


class NoOpMetrics:
    """Accepts every record and keeps nothing."""

    __slots__ = ()

    def emit(self, record: Any) -> None:
        return None

    def get_metrics(self) -> dict[str, Any]:
        return {}

    def reset(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NoOpMetrics()"
