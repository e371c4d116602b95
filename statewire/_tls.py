"""TLS as bytes in, bytes out: what
:class:`~statewire.runtime.socket_transport.SocketTransport` runs once a protocol calls
``startTLS``.

Theory of operation
-------------------
A :class:`TLSSession` is an ``ssl.SSLObject`` between two ``ssl.MemoryBIO`` objects: the
transport feeds it the ciphertext it reads (:meth:`~TLSSession.receive`), asks it for the
plaintext that came out (:meth:`~TLSSession.read`), hands it the plaintext the protocol
writes (:meth:`~TLSSession.encrypt`), and sends whatever ciphertext it made
(:meth:`~TLSSession.take_output`, which :meth:`~TLSSession.encrypt` and
:meth:`~TLSSession.close` return directly). It never touches a socket, so the transport
keeps its own reads, writes, poller, buffers and deadlines, and the handshake is driven by
the same readiness events as the data.

Plaintext written while the handshake runs is held here, in order, and encrypted the moment
the handshake completes (after the handshake's own messages). Ciphertext that arrives while
the transport does not want plaintext (its protocol paused reading) stays in the incoming
BIO, undecrypted, until :meth:`~TLSSession.read` is asked to deliver: the memory it holds
is at most what one read brought.
"""

from __future__ import annotations

import contextlib
import ssl

#: plaintext asked of the ``SSLObject`` per call (one TLS record holds at most 16 KiB)
_CHUNK = 64 * 1024


def check_server_context(context: object, what: str = "a TLS port") -> None:
    """Refuse what cannot serve TLS, where it is configured rather than on each
    connection: anything but an ``ssl.SSLContext`` (``TypeError``), a client context, or
    one that cannot answer a client's hello, as one with no certificate loaded
    (``ValueError``). The hello is a trial in memory, offering every cipher and version;
    a context with an ``sni_callback`` (which may pick the certificate) is not tried."""
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"{what} takes an ssl.SSLContext, not {type(context).__name__}")
    incoming = ssl.MemoryBIO()
    try:
        server = context.wrap_bio(incoming, ssl.MemoryBIO(), server_side=True)
    except (ssl.SSLError, ValueError) as error:
        raise ValueError(f"{what}: this context cannot serve TLS: {error}") from None
    if context.sni_callback is not None:
        return
    incoming.write(_a_hello())
    try:
        server.do_handshake()
    except ssl.SSLWantReadError:
        return  # (it answered, and waits for the client's next message)
    except ssl.SSLError as error:
        raise ValueError(
            f"{what}: this context cannot answer a client's hello (no certificate "
            f"loaded?): {error}"
        ) from None


def _a_hello() -> bytes:
    """A client's first handshake message, offering every cipher and version."""
    offer = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    offer.check_hostname = False
    offer.verify_mode = ssl.CERT_NONE
    offer.set_ciphers("ALL:@SECLEVEL=0")
    outgoing = ssl.MemoryBIO()
    client = offer.wrap_bio(ssl.MemoryBIO(), outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):  # (it waits for the server's answer)
        client.do_handshake()
    return outgoing.read()


class TLSSession:
    """One side of a TLS connection, sans I/O.

    ``server_side`` and ``server_hostname`` are those of ``SSLContext.wrap_bio`` (which
    raises here, e.g. ``ValueError`` for a client context that checks host names when no
    ``server_hostname`` is given).
    """

    __slots__ = (
        "_early",
        "_early_size",
        "_incoming",
        "_outgoing",
        "_ssl",
        "closed",
        "eof",
        "from_start",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
        from_start: bool = False,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        #: plaintext written before the handshake completed; ``None`` once it has
        self._early: list[bytes] | None = []
        self._early_size = 0
        #: the peer sent its close_notify (its end of the TLS stream)
        self.eof = False
        #: our close_notify was made (see :meth:`close`)
        self.closed = False
        #: TLS from the connection's first byte (a ``listenSSL`` port), not a ``startTLS``
        self.from_start = from_start

    @property
    def handshaking(self) -> bool:
        """Whether the handshake has yet to complete."""
        return self._early is not None

    @property
    def buffered(self) -> int:
        """Plaintext bytes held until the handshake completes."""
        return self._early_size

    @property
    def unread(self) -> bool:
        """Whether ciphertext or plaintext waits to be read (see :meth:`read`)."""
        return bool(self._incoming.pending or self._ssl.pending())

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        """The ``SSLObject`` once the handshake completed (peer certificate, cipher...)."""
        return None if self.handshaking else self._ssl

    def receive(self, data: bytes) -> None:
        """Ciphertext from the peer."""
        self._incoming.write(data)

    def read(self, deliver: bool) -> bytes:
        """Move the handshake on with what was received; once it is done and if
        ``deliver``, decrypt what was received, and return that plaintext.

        Raises ``ssl.SSLError`` when the peer broke TLS (a failed handshake, a bad
        record); :meth:`take_output` may then hold an alert for the peer. Sets
        :attr:`eof` when the peer's close_notify arrived.
        """
        if self._early is not None:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            early, self._early = self._early, None
            self._early_size = 0
            if early:
                self._write(b"".join(early))
        if not deliver or self.eof:
            return b""
        chunks: list[bytes] = []
        incoming, tls = self._incoming, self._ssl
        while True:
            try:
                chunk = tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            if not chunk:  # the peer's close_notify, on some OpenSSL versions
                self.eof = True
                break
            chunks.append(chunk)
            if not incoming.pending and not tls.pending():
                break  # all read: spare the read that would only raise SSLWantReadError
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def encrypt(self, data: bytes) -> bytes:
        """Plaintext for the peer: the ciphertext to send now (nothing while the handshake
        runs: the plaintext is held until it completes)."""
        early = self._early
        if early is not None:
            early.append(data)
            self._early_size += len(data)
            return b""
        if self.closed:  # after our close_notify: nothing more can be sent (as Twisted)
            return b""
        self._write(data)
        return self._outgoing.read()

    def _write(self, data: bytes) -> None:
        written = self._ssl.write(data)
        if written == len(data):
            return
        view = memoryview(data)[written:]
        while view:  # a memory BIO takes all, but write() may still say it took less
            written = self._ssl.write(view)
            view = view[written:]

    def take_output(self) -> bytes:
        """Ciphertext made and not yet taken: handshake messages, records, alerts."""
        return self._outgoing.read()

    def close(self) -> bytes:
        """Our close_notify, to send before closing (``b""`` when already made, or when the
        handshake never completed: there is no TLS stream to end)."""
        if self.closed or self.handshaking:
            return b""
        self.closed = True
        try:
            self._ssl.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # the peer's close_notify is not awaited (as Twisted)
        except ssl.SSLError:
            return b""  # the session is broken already: nothing worth sending
        return self._outgoing.read()
