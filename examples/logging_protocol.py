"""A factory that lets its protocols write to a log file (the seed document's
``LoggingProtocol`` and ``LogfileFactory``).

Each line received is appended to the log file. The factory opens the file when it starts
listening (``startFactory``) and closes it, flushing what was written, when it stops
(``stopFactory``: SIGINT or SIGTERM stop the server gracefully).

python examples/logging_protocol.py --port 8007 --logfile /tmp/lines.log
statewire serve examples/logging_protocol.py:factory --listen tcp:8007:interface=127.0.0.1
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO

from statewire.basic import LineReceiver
from statewire.protocol import Factory

#: where ``factory`` (and the command line, without ``--logfile``) writes
DEFAULT_LOGFILE = Path(tempfile.gettempdir()) / "statewire-logging-protocol.log"


class LoggingProtocol(LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        self.factory.fp.write(line + b"\n")


class LogfileFactory(Factory):
    protocol = LoggingProtocol
    fp: IO[bytes]

    def __init__(self, fileName: str | Path) -> None:
        self.file = fileName

    def startFactory(self) -> None:
        self.fp = open(self.file, "ab")  # noqa: SIM115 - open until stopFactory

    def stopFactory(self) -> None:
        self.fp.close()


factory = LogfileFactory(DEFAULT_LOGFILE)


def main() -> None:
    from _cli import options, run_with_endpoint

    args = options(
        __doc__,
        extra=lambda parser: parser.add_argument(
            "--logfile", default=str(DEFAULT_LOGFILE), help=f"default {DEFAULT_LOGFILE}"
        ),
    )
    run_with_endpoint(LogfileFactory(args.logfile), __doc__, args)


if __name__ == "__main__":
    main()
