"""Trace context from OpenTelemetry, read without importing it."""

from __future__ import annotations

import sys
from typing import Final

__all__ = ["OTEL_MODULE", "current_trace_ids"]

#: Where the active span is read from, once the application has imported it.
OTEL_MODULE: Final = "opentelemetry.trace"


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the active OpenTelemetry span, or None.

    OpenTelemetry is looked up in ``sys.modules`` and never imported: an application that
    has not imported it has no active span, and logging must not pay for the import.
    """
    trace = sys.modules.get(OTEL_MODULE)
    if trace is None:
        return None
    try:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    except Exception:  # a broken or partial install must not break logging
        return None
