"""The pipeline wing: from the log topics in Kafka to LogTide, and the topics themselves.

Public modules: :mod:`~logtide_kafka.pipeline.shipper` (the consumer that ships to LogTide's
ingest API at-least-once), :mod:`~logtide_kafka.pipeline.topics` (the topic layout, plan and
apply) and :mod:`~logtide_kafka.pipeline.lag` (consumer-group lag and health).  The private
rooms each hold one step of shipping; ``docs/architecture.md`` maps them.  Nothing here is
imported by the producer wing: an application that only logs never loads it.
"""
