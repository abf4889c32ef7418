"""The shipper's loggers, named once (``docs/cli.md`` lists what each one says)."""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["KAFKA_LOG", "SHIPPER_LOG"]

#: The shipper's own lines: start and stop, retry streaks, poison entries, commits.
SHIPPER_LOG: Final = logging.getLogger("logtide_kafka.shipper")
#: librdkafka's lines from the shipper's consumer, dead-letter producer and admin client.
KAFKA_LOG: Final = logging.getLogger("logtide_kafka.shipper.kafka")
