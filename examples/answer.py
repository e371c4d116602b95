"""Answer (the seed document's ``LineReceiver`` example): a reply to each line.

    How are you?        -> Fine
    anything else       -> I don't know what you mean

Ported by changing the import: ``from statewire.basic import LineReceiver``. Lines end with
CRLF, and the delimiter is not part of the line.

python examples/answer.py --port 8007
statewire serve examples/answer.py:factory --listen tcp:8007:interface=127.0.0.1
"""

from __future__ import annotations

from statewire.basic import LineReceiver
from statewire.protocol import Factory


class Answer(LineReceiver):
    answers = {b"How are you?": b"Fine", None: b"I don't know what you mean"}

    def lineReceived(self, line: bytes) -> None:
        if line in self.answers:
            self.sendLine(self.answers[line])
        else:
            self.sendLine(self.answers[None])


factory = Factory.forProtocol(Answer)


def main() -> None:
    from _cli import run_with_endpoint

    run_with_endpoint(factory, __doc__)


if __name__ == "__main__":
    main()
