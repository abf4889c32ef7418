"""A minimal Django project whose logs go to Kafka through ``settings.LOGGING``.

Run it under gunicorn, from the ``examples`` directory::

    cd examples
    KAFKA_BROKERS=127.0.0.1:9092 gunicorn -w 3 --max-requests 100 django_site.wsgi

See ``docs/django.md``.
"""
