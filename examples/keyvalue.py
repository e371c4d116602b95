"""A binary key-value store, declared in automat's classic style (``MethodicalMachine``).

Every message, both ways, is a 4-byte big-endian length, then that many bytes::

    | length (u32, big-endian) | body (length bytes, at most 64 KiB) |

A request's body is an opcode byte and its payload; a response's body is a status byte
and its payload::

    request                         response
    G key                           0x00 value       or  0x01 (no such key)
    S key 0x00 value                0x00
    D key                           0x00             or  0x01 (no such key)
    Q                               0x00 "bye"       (then the server closes)
    any other opcode                0x02 "unknown opcode"
    S without the 0x00 separator    0x02 "bad request"

For example ``00 00 00 04 47 6b 65 79`` is GET ``key``. A length over 64 KiB is answered
``0x02 "bad request"`` and the connection closed: the bytes after it cannot be framed.
A client silent for 30 seconds (``--idle`` to change) is told ``0x02 "idle too long"`` and
disconnected.

Two states: ``ready`` reads requests; ``closed`` (after QUIT, the idle timeout or the
connection's loss) reads nothing. The store is the factory's, shared by every connection.

python examples/keyvalue.py --port 8007
statewire serve examples/keyvalue.py:factory --listen tcp:8007:interface=127.0.0.1
"""

from __future__ import annotations

from automat import MethodicalMachine

from grammars import prefixed
from statewire.declarative import MachineProtocol
from statewire.machine import Timeout, by_key
from statewire.protocol import Factory

MAX_FRAME = 64 * 1024
IDLE_SECONDS = 30.0
OK, NOT_FOUND, ERROR = b"\x00", b"\x01", b"\x02"

#: requests and responses: a u32 big-endian length, then the body
FRAMES = prefixed(4, max_length=MAX_FRAME)


# what each request's input is called with (by default: the whole frame)
def _nothing(frame: bytes) -> tuple[()]:
    return ()


def _key(frame: bytes) -> tuple[bytes]:
    return (frame[1:],)


def _key_value(frame: bytes) -> tuple[bytes, bytes]:
    key, value = frame[1:].split(b"\0", 1)  # no separator: ValueError, a bad request
    return key, value


class KeyValue(MachineProtocol):
    _machine = MethodicalMachine()
    machine = _machine

    @_machine.state(initial=True)
    def ready(self) -> None:
        "Reading requests."

    @_machine.state()
    def closed(self) -> None:
        "Done: nothing more is read."

    @_machine.input()
    def get(self, key: bytes) -> None:
        "G: look a key up."

    @_machine.input()
    def set(self, key: bytes, value: bytes) -> None:
        "S: store a value."

    @_machine.input()
    def delete(self, key: bytes) -> None:
        "D: forget a key."

    @_machine.input()
    def quit(self) -> None:
        "Q: say goodbye."

    @_machine.input()
    def unknown(self, frame: bytes) -> None:
        "Any other opcode."

    @_machine.input()
    def idle(self) -> None:
        "The client said nothing for too long."

    @_machine.input()
    def disconnected(self, reason: object) -> None:
        "The connection is gone."

    @_machine.output()
    def _send_value(self, key: bytes) -> None:
        value = self.factory.store.get(key)
        self.send(NOT_FOUND if value is None else OK + value)

    @_machine.output()
    def _store(self, key: bytes, value: bytes) -> None:
        self.factory.store[key] = value
        self.send(OK)

    @_machine.output()
    def _forget(self, key: bytes) -> None:
        found = self.factory.store.pop(key, None) is not None
        self.send(OK if found else NOT_FOUND)

    @_machine.output()
    def _refuse(self, frame: bytes) -> None:
        self.send(ERROR + b"unknown opcode")

    @_machine.output()
    def _say_bye(self) -> None:
        self.send(OK + b"bye")
        self.close()

    @_machine.output()
    def _time_out(self) -> None:
        self.send(ERROR + b"idle too long")
        self.close()

    ready.upon(get, enter=ready, outputs=[_send_value])
    ready.upon(set, enter=ready, outputs=[_store])
    ready.upon(delete, enter=ready, outputs=[_forget])
    ready.upon(unknown, enter=ready, outputs=[_refuse])
    ready.upon(quit, enter=closed, outputs=[_say_bye])
    ready.upon(idle, enter=closed, outputs=[_time_out])
    ready.upon(disconnected, enter=closed, outputs=[])
    closed.upon(disconnected, enter=closed, outputs=[])

    framings = {ready: FRAMES}  # ``closed`` has no framing: it reads nothing
    routes = {
        ready: by_key(
            lambda frame: frame[:1],
            {
                b"G": (get, _key),
                b"S": (set, _key_value),
                b"D": (delete, _key),
                b"Q": (quit, _nothing),
            },
            unknown=unknown,
        )
    }
    timeouts = {ready: Timeout(IDLE_SECONDS, idle, idle=True)}
    lost = "disconnected"  # by name: automat binds an input read back from the class
    sends = FRAMES
    # a request the route cannot read (S without its separator) is answered, and the
    # connection stays; after a length over MAX_FRAME it closes (nothing more can be framed)
    error_reply = ERROR + b"bad request"
    close_on_error = False


def idle_after(seconds: float) -> type[KeyValue]:
    """``KeyValue`` with another idle timeout (declarations belong to a class: a subclass)."""

    class KeyValueWithIdle(KeyValue):
        timeouts = {"ready": Timeout(seconds, "idle", idle=True)}  # states and inputs by name

    return KeyValueWithIdle


class KeyValueFactory(Factory):
    protocol = KeyValue

    def __init__(self) -> None:
        self.store: dict[bytes, bytes] = {}


factory = KeyValueFactory()


def main() -> None:
    from _cli import options, run_with_endpoint

    args = options(
        __doc__,
        extra=lambda parser: parser.add_argument(
            "--idle", type=float, default=IDLE_SECONDS, help="idle timeout in seconds"
        ),
    )
    if args.idle != IDLE_SECONDS:
        factory.protocol = idle_after(args.idle)
    run_with_endpoint(factory, __doc__, args)


if __name__ == "__main__":
    main()
