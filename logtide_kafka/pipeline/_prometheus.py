"""The Prometheus text exposition format (0.0.4), defined once for the shipper's metrics
endpoint and ``logtide-kafka lag --prometheus``: sample values and label sets."""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["labels", "number"]


def number(value: float) -> str:
    """A sample value: integers (and ``IntEnum`` grades) as integers, floats by ``repr``
    (``0.0``, ``0.01``), infinities and NaN as Prometheus spells them."""
    if isinstance(value, int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def labels(pairs: Mapping[str, str]) -> str:
    """``{key="value",...}``, values escaped as the format asks."""
    return "{" + ",".join(f"{key}={_label(value)}" for key, value in pairs.items()) + "}"


def _label(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
