"""``examples/celery_app/tasks.py`` without its ``worker_process_shutdown`` handler: what
a recycled pool child delivers when the application adds no code for it.

Run from ``examples/celery_app`` with ``tests`` on ``PYTHONPATH``:
``celery -A apps.celery_no_hook worker``.
"""

from __future__ import annotations

from celery import signals
from tasks import app, deliver_logs

__all__ = ["app"]

signals.worker_process_shutdown.disconnect(deliver_logs)
