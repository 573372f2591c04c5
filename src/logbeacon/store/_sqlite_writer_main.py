"""Entry point of the SQLite writer process (`_sqlite_writer_process.py`).

    python -m logbeacon.store._sqlite_writer_main REQUESTS_FD REPLIES_FD

The parent passes two pipe descriptors and then the `WriterConfig` as the first message.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection

from logbeacon.store._sqlite_writer_process import child_main

__all__ = ["main"]


def main(argv: Sequence[str]) -> None:
    requests = Connection(int(argv[0]), writable=False)
    replies = Connection(int(argv[1]), readable=False)
    try:
        config = requests.recv()
    except (EOFError, OSError):  # the parent went away before sending it
        return
    child_main(requests, replies, config)


if __name__ == "__main__":
    main(sys.argv[1:])
