"""``python -m logtide_kafka``: the ``logtide-kafka`` command line."""

import sys

from logtide_kafka.cli import main

sys.exit(main())
