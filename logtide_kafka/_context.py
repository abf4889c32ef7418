"""Trace context from OpenTelemetry, read without importing it."""

from __future__ import annotations

import sys

__all__ = ["current_trace_ids"]


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the active OpenTelemetry span, or None.

    OpenTelemetry is looked up in ``sys.modules`` and never imported: an application that
    has not imported it has no active span, and logging must not pay for the import.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    except Exception:  # a broken or partial install must not break logging
        return None
