"""Settings of the example Django project: the part that matters is ``LOGGING``.

Django passes ``LOGGING`` to ``logging.config.dictConfig`` when it starts, in each
gunicorn worker.  ``KafkaHandler`` takes the brokers from ``KAFKA_BROKERS`` when
``bootstrap_servers`` is not given; ``LOGTIDE_SERVICE`` and ``LOGTIDE_TOPIC`` let the test
suite give each run its own service and topic.
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_site.urls"
WSGI_APPLICATION = "django_site.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True

LOGGING: dict[str, Any] = {
    "version": 1,
    # Django's own loggers (django.request: 4xx/5xx responses) keep working and reach
    # Kafka through the root logger.
    "disable_existing_loggers": False,
    "formatters": {"console": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console", "level": "WARNING"},
        "kafka": {
            "class": "logtide_kafka.KafkaHandler",
            "level": "INFO",
            "service": os.environ.get("LOGTIDE_SERVICE", "django-shop"),
            "topic": os.environ.get("LOGTIDE_TOPIC", "logs.application"),
            "fields": {"framework": "django"},
            # The default secret keys stay redacted; these are redacted too.
            "redact_extra": ["card_number"],
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "kafka"]},
}
