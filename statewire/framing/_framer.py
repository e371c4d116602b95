"""The incremental framer: bytes in, in chunks of any size; frames out, to a callback.

Theory of operation
-------------------
A :class:`Framer` holds one decoder, made for its current grammar (a fast path for the
framings of :mod:`grammars`, the generic path for any other construct grammar), and the
bytes not yet handed to it, as a bytes object and a position: nothing is copied when a
batch stops early. ``feed`` asks the decoder for a batch of frames and calls ``on_frame``
for each, checking one flag after each call. The flag is set when the callback switches the
grammar or pauses the framer; the framer then rewinds to just after the frame that was
delivered, so the bytes of the frames not yet delivered are the framer's again, exactly as
they arrived, and either waits (pause) or hands them to a decoder for the new grammar
(switch). That is how a switch between any two frames keeps every byte, and why flipping
grammars on every byte is a loop, not recursion.

Batches are unbounded until a callback first interrupts one; after each switch or pause
they start again at one frame and double while nothing interrupts them. So a protocol that
switches on every frame costs linear time (a batch never cuts much more than was delivered
since the last interruption), while steady traffic is cut a whole read at a time.

Three shortcuts keep a state change as cheap as a frame: a switch asked for by the last
frame of a batch installs the new decoder at once (a decoder made before is reused with a
few attribute stores); the frame after a switch is cut by the decoder's ``one`` (no batch:
no list, no iterator, nothing to rewind); and a read that is exactly one frame (a request
of a request/response protocol) is delivered by ``feed`` itself. Each keeps the semantics
of the general path: ``offset`` and ``buffered`` inside the callback, pauses, interrupts,
switches, and exceptions (the frame that raised counts as delivered, the switch it asked
for is kept); ``tests/test_framing_properties.py`` checks them under any chunking.

The generic path (any construct grammar that is not one of the framings) cannot resume a
parse: it retries an unfinished frame from its start, but only when the new bytes could
finish it, so a frame dribbled one byte at a time still costs linear time. :meth:`eof` and
``feed(b"")`` also retry a frame it held back (see :mod:`statewire.framing._generic`).

Errors
------
A decoder that meets bad bytes returns the frames before them and an error; the framer
delivers those frames, then reports the error: to ``on_error`` if given, else by raising it
from the call that fed the bytes. What happens next is the policy:

* ``Policy.CLOSE`` (Twisted's behaviour, the default): the framer stops. ``error`` holds the
  error, ``buffered`` holds the bad frame's bytes and everything after them, and every later
  ``feed`` raises the error again.
* ``Policy.DISCARD`` (Netty's and tokio's): a too-long line is dropped through its
  delimiter and a too-long length-prefixed frame through its announced length, without
  buffering them, and framing goes on. Errors with no way to resynchronise (a malformed
  netstring, a negative length, any error of the generic path) stop the framer as ``CLOSE``
  does. With no ``on_error`` the error is raised and the frames after it wait for the next
  ``feed`` (``feed(b"")`` resumes at once). An ``on_error`` callback that switches the
  grammar takes over instead: the new grammar frames the bad frame's bytes, nothing is
  dropped (so what it gets does not depend on how the bytes were cut into reads). A
  second error at the same offset, with no byte consumed since the callback switched, is
  fatal: grammars that refuse the same bytes in turn would otherwise loop for ever. A
  switch made later, once the dropping has begun (by work the callback left for after it,
  as a declared machine's postponed input), takes effect after the dropped frame's end:
  the rest of that frame is dropped as the old grammar cuts it, however the reads cut the
  stream, so the new grammar frames the same bytes as when the whole frame came in one read.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Iterable, Mapping
from operator import length_hint
from typing import TYPE_CHECKING, Any, SupportsIndex

from grammars import Fixed, LengthPrefixed, Limited, Line, Netstring, Raw, Request, Streamed
from grammars.resp import Resp
from grammars.websocket import ClientFrames
from statewire.framing._after import AfterQueue
from statewire.framing._decoder import Decoder, FixedDecoder, RawDecoder
from statewire.framing._generic import GenericDecoder
from statewire.framing._line import LineDecoder
from statewire.framing._netstring import NetstringDecoder
from statewire.framing._prefixed import PrefixedDecoder
from statewire.framing._replies import ReplyDecoder
from statewire.framing._resp import RespDecoder
from statewire.framing._streamed import StreamedDecoder
from statewire.framing._websocket import WebSocketDecoder
from statewire.framing.errors import FramingError, TruncatedFrame

if TYPE_CHECKING:
    from typing_extensions import Buffer  # (bytes-like: collections.abc.Buffer in 3.12)

#: Bytes one frame of a grammar without its own limit (the generic path) may need.
DEFAULT_MAX_LENGTH = 1 << 20
#: Largest batch of frames cut at once (batches double up to this after an interruption).
_MAX_BATCH = 1 << 30
#: After a switch, frames are cut one at a time by the step path until this budget: the
#: first ``_STEPS - 1`` frames; then in batches (of ``_STEPS``, doubling).
_STEPS = 4


_CONTEXT_FREE = (Line, Netstring, LengthPrefixed, Raw)


class _OneFrame:
    """``Framer._batch`` while a frame cut by the step path (:meth:`Decoder.one`) is being
    delivered: nothing of a batch is left to give back, ``_pos`` is just after it."""


_ONE = _OneFrame()


class _BetweenFrames:
    """``Framer._batch`` while an ``after_frame`` callback runs: the frame it follows is
    delivered and the batch given back, so a switch may be installed at once; for
    ``offset`` and ``buffered`` it is no batch at all."""


_BETWEEN = _BetweenFrames()
_NO_CONTEXT: Mapping[str, Any] = {}


class Policy(enum.Enum):
    """What a framer does after a framing error (see the module documentation)."""

    CLOSE = "close"
    DISCARD = "discard"


#: Decoders kept for reuse per framer (grammars that need no context); beyond, start over.
_CACHED_DECODERS = 8


def make_decoder(
    grammar: Any, base: int, context: Mapping[str, Any], max_length: int, fast: bool = True
) -> Decoder:
    """The decoder for ``grammar``: a fast path for the framings, else the generic path."""
    kind = type(grammar) if fast else None
    if kind is Line:
        return LineDecoder(grammar, base)
    if kind is Netstring:
        return NetstringDecoder(grammar, base)
    if kind is LengthPrefixed:
        return PrefixedDecoder(grammar, base)
    if kind is Fixed:
        return FixedDecoder(grammar, base, grammar.size_in(context))
    if kind is Raw:
        return RawDecoder(grammar, base)
    if kind is Streamed:
        return StreamedDecoder(grammar, base, grammar.size_in(context))
    if kind is Request:
        return RespDecoder(grammar, base)
    if kind is Resp:
        return ReplyDecoder(grammar, base)
    if kind is ClientFrames:
        return WebSocketDecoder(grammar, base)
    if kind is Limited:  # the framing's own bound replaces the framer's
        return GenericDecoder(grammar.subcon, base, dict(context), grammar.max_length)
    return GenericDecoder(grammar, base, dict(context), max_length)


class Framer:
    """Cuts the frames of ``grammar`` out of the bytes fed to it and calls ``on_frame``.

    :param grammar: a framing from :mod:`grammars` or any construct grammar.
    :param on_frame: called with each complete frame, in order. If it raises, the
        exception propagates out of ``feed`` and the frames after that one stay buffered,
        to be delivered by the next ``feed`` (``feed(b"")`` resumes at once), in the
        grammar the callback switched to before raising, if it did.
    :param on_error: called with each :class:`FramingError`; if ``None`` errors are raised.
    :param policy: what to do after an error: :attr:`Policy.CLOSE` or
        :attr:`Policy.DISCARD`.
    :param context: construct context for the grammar (e.g. ``{"size": 10}`` for
        ``fixed(this.size)``).
    :param max_length: bound on one frame of a grammar that has none of its own (the
        generic path); :func:`grammars.limited` sets one per grammar.
    :param fast: ``False`` runs construct's own parser even for the framings (slow; for
        checking the fast paths).
    """

    __slots__ = (
        "_after",
        "_ahead",
        "_batch",
        "_budget",
        "_context",
        "_decoder",
        "_decoders",
        "_draining",
        "_ended",
        "_grammar",
        "_held",
        "_installed",
        "_interrupt",
        "_looped_at",
        "_paused",
        "_pos",
        "_running",
        "_src",
        "_stop_batch",
        "_switch_to",
        "error",
        "fast",
        "max_length",
        "on_error",
        "on_frame",
        "policy",
    )

    def __init__(
        self,
        grammar: Any,
        on_frame: Callable[[Any], object],
        *,
        on_error: Callable[[FramingError], object] | None = None,
        policy: Policy = Policy.CLOSE,
        context: Mapping[str, Any] | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        fast: bool = True,
    ) -> None:
        self.on_frame = on_frame
        self.on_error = on_error
        self.policy = policy
        self.max_length = max_length
        self.fast = fast
        #: the error that stopped the framer, if one did
        self.error: FramingError | None = None
        self._grammar = grammar
        self._context: Mapping[str, Any] = context or {}
        self._decoder = make_decoder(grammar, 0, self._context, max_length, fast)
        self._decoders: dict[int, Decoder] | None = None  # made at the first switch
        #: the decoder of the grammar before a switch, still dropping the rest of a bad
        #: frame (``DISCARD``): the current grammar frames what follows that frame's end
        self._draining: Decoder | None = None
        #: the bytes not yet handed to the decoder: ``_src[_pos:]``, then ``_held``
        self._src = b""
        self._pos = 0
        self._held = bytearray()
        self._budget = _MAX_BATCH
        #: the batch being delivered: its size and the iterator over what is left of it,
        #: or ``_ONE`` for a frame of the step path
        self._batch: tuple[int, Any] | _OneFrame | _BetweenFrames | None = None
        self._running = False
        self._paused = False
        self._ended = False
        self._interrupt = False
        #: whether the interrupt was asked by a take_ahead (which may take again after it)
        self._ahead = False
        self._installed = False
        self._stop_batch = False
        self._switch_to: tuple[Any, Mapping[str, Any]] | None = None
        #: what to call once the current callback returns (``after_frame``)
        self._after: Callable[[], object] | None = None
        #: stream offset of the last bad frame an ``on_error`` switch took over
        self._looped_at: int | None = None

    @property
    def grammar(self) -> Any:
        """The grammar framing the bytes now."""
        return self._grammar

    @property
    def context(self) -> Mapping[str, Any]:
        """The construct context the grammar is evaluated in (``this.size``...)."""
        return self._context

    @property
    def paused(self) -> bool:
        """Whether delivery is paused (see :meth:`pause`)."""
        return self._paused

    @property
    def waiting(self) -> bool:
        """Whether bytes are buffered that no decoder has looked at yet (a batch was cut
        short by :meth:`interrupt`, a pause, or a switch made with ``deliver=False``)."""
        return self._pos < len(self._src) or bool(self._held)

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet delivered in a frame or discarded
        (inside ``on_frame``: just after the frame being delivered)."""
        after = self._after_current()
        if after is not None:
            return self._decoder._src_base + after
        draining = self._draining
        return self._decoder.base if draining is None else draining.base

    @property
    def buffered(self) -> bytes:
        """The bytes fed but not yet delivered in a frame, in stream order (inside
        ``on_frame``: everything after the frame being delivered)."""
        after = self._after_current()
        if after is not None:  # the batch's undelivered tail is still in _src
            return self._src[after:] + bytes(self._held)
        rest = self._src[self._pos :]
        # (while the old grammar drops a bad frame's end, what it holds comes first: the
        # new grammar has seen no byte yet)
        draining = self._draining
        holder = self._decoder if draining is None else draining
        return bytes(holder.pending) + rest + bytes(self._held)

    def _after_current(self) -> int | None:
        """Inside ``on_frame``: the position in ``_src`` just after the frame delivered."""
        batch = self._batch
        if batch is None or batch is _BETWEEN:
            return None
        if batch is _ONE:
            return self._pos
        assert isinstance(batch, tuple)
        size, remaining = batch
        return self._decoder._position_after(size - length_hint(remaining))

    def feed(self, data: Buffer) -> None:
        """Frame ``data``, the next bytes of the stream, delivering every complete frame.

        While paused, or when called from inside ``on_frame``, the bytes are queued behind
        the ones already buffered. After the framer stopped on an error this raises it.
        ``data`` is any bytes-like object; ``feed(b"")`` also delivers what a raised error
        left buffered and retries a frame the generic path held back.
        """
        if self.error is not None:
            raise self.error
        if self._ended:
            raise RuntimeError("feed() after eof(): the stream has ended")
        if type(data) is not bytes:
            data = _as_bytes(data)  # frames are bytes whatever the reads were
        if self._paused or self._running or self._pos < len(self._src) or self._held:
            self._held += data  # behind what is buffered (a callback that raised left some)
        else:
            self._src = data
            self._pos = 0
            decoder = self._decoder
            if not decoder.pending and not self._interrupt and data and self._draining is None:
                # the common read of a request/response protocol: one whole frame (or
                # the first of several: the rest by the general path), delivered here --
                # what ``_run``'s step does for it, with no batch and no call more
                frame = decoder.one(data, 0)
                if frame is not None:
                    self._pos = decoder.end
                    self._running = True
                    self._batch = _ONE
                    try:
                        self.on_frame(frame)
                        self._batch = None
                        self._installed = False
                        # a switch, work after the frame, a pause, an interrupt: acted on
                        # while running, as in ``_run`` (work after the frame is a
                        # callback's too)
                        if self._interrupt and self._interrupted():
                            return
                    except BaseException:
                        self._raised()
                        raise
                    finally:
                        self._batch = None
                        self._running = False
                    if (self._held or self._decoder.eager or self._pos < len(self._src)) and (
                        self.error is None
                    ):
                        # bytes fed from inside the callback, a switch to ``fixed(0)``,
                        # bytes unread
                        self._run()
                    else:
                        self._src = b""
                        self._pos = 0
                    return
        if not (self._paused or self._running):
            self._run(flush=not data)

    def unread(self, data: Buffer) -> None:
        """From inside ``on_frame``: ``data``, the end of the frame being delivered, was not
        used. It is framed again, first — before the rest of the read and the reads held
        behind it — by the grammar current when the callback returns (a state that reads
        ``raw`` and finds where its part of the stream ends gives back what follows).
        Stream offsets go back by its length: nothing is counted twice. (A block framing,
        ``fixed`` or ``streamed``, does not count the bytes given back out of its block:
        meant for a callback whose state then leaves that framing.)"""
        if not self._running:
            raise RuntimeError("unread() is for a framer callback: the frame being delivered")
        given = bytes(data)  # (any bytes-like object)
        if not given:
            return
        if self._batch is not _ONE:
            self._rewind_batch()  # the frames after this one go back to the source, unread
        self._src = given + self._src[self._pos :]
        self._pos = 0
        self._decoder.base -= len(given)
        self._interrupt = True  # the batch under way (if any) ends: the source changed
        self._ahead = False  # (and no take_ahead may follow in this callback)

    def take_ahead(self, size: SupportsIndex) -> bytes | None:
        """From inside ``on_frame``: the ``size`` bytes right after the frame being
        delivered, when the bytes being framed (the read under way; not the reads held
        behind it while the framer was paused or running) hold them all, consumed as a
        frame of their own would be (``offset`` moves past them; what follows them is
        framed by the grammar current when the callback returns); else ``None``, nothing
        consumed.

        For a callback that knows what follows its frame, and how long it is (a body of an
        announced length), and would otherwise switch to a block framing and back to read
        it: when it has arrived whole, with the frame, it costs no switch. A callback may
        take again after a take. ``None`` too where the callback already changed what
        follows its frame or asked for something after it (a switch, an :meth:`unread`, a
        pause, an :meth:`interrupt`, work after the frame: an input the machine postponed),
        and between frames; the callback then reads the bytes its usual way. After a take,
        :meth:`unread` is not for the callback: the bytes it would give back come before
        the ones taken."""
        size = operator.index(size)  # (before anything moves: a float is refused whole)
        after = self._ahead_at("take_ahead")
        if after is None or size < 0 or len(self._src) - after < size:
            return None  # (bytes held behind the read: rare, and read the usual way)
        batch = self._batch
        if batch is not _ONE:
            # the frames cut after this one are given back (their bytes are the ones
            # taken, and what follows them is framed again), as an unread gives them back
            self._rewind_batch()
            self._batch = _ONE  # (what is left: this frame, with _pos just after it)
            self._interrupt = self._ahead = True  # the batch under way ends
        pos = self._pos
        self._pos = pos + size
        self._decoder.base += size  # (base is the stream offset of _src[_pos])
        # what follows is framed a frame at a time, as after a switch: a stream whose
        # frames are read with what follows them (pipelined requests whose heads or blocks
        # are taken so) is read so throughout, each frame free to take its own
        self._budget = 1
        return self._src[pos : pos + size]

    def peek_ahead(self, limit: SupportsIndex) -> bytes | None:
        """From inside ``on_frame``: the bytes right after the frame being delivered that
        the read under way holds, at most ``limit`` of them, not consumed; ``None`` where
        :meth:`take_ahead` would take nothing (``b""``: the read ends with the frame).

        For a callback that must look at what follows its frame to know how much of it to
        take: a request head whose field lines came with its request line, read whole.
        ``None`` too inside a batch whose frames after this one are cut already (a read of
        many short frames): they are delivered as they are, which costs less than taking
        their bytes again would (a take there gives the batch back)."""
        limit = operator.index(limit)
        batch = self._batch
        if type(batch) is tuple and length_hint(batch[1]):
            return None  # (before _ahead_at: where a batch's frame ends costs its frames)
        after = self._ahead_at("peek_ahead")
        if after is None or limit < 0:
            return None
        return self._src[after : after + limit]

    def _ahead_at(self, caller: str) -> int | None:
        """Where the bytes after the frame being delivered start in ``_src``, when a
        callback may take them (see :meth:`take_ahead`); else ``None``."""
        if not self._running:
            raise RuntimeError(f"{caller}() is for a framer callback: the frame being delivered")
        batch = self._batch
        if (
            batch is None
            or batch is _BETWEEN
            or (self._interrupt and not self._ahead)
            or self._switch_to is not None
            or self._after is not None
            or self._stop_batch
            or self._paused
        ):
            return None
        if batch is _ONE:  # (what _after_current gives, without its call: the common case)
            return self._pos
        return self._after_current()

    def switch(
        self, grammar: Any, *, context: Mapping[str, Any] | None = None, deliver: bool = True
    ) -> None:
        """Frame the bytes after the current frame with ``grammar`` from now on.

        From inside ``on_frame`` it takes effect when the callback returns; the bytes
        already buffered are then framed by the new grammar, nothing lost, duplicated or
        reordered. Called between feeds it re-frames the buffered bytes at once, unless
        ``deliver`` is false: then they wait for the next ``feed`` (``feed(b"")``).
        """
        if self._running:
            batch = self._batch
            if (
                batch is not None
                and not self._interrupt
                and self._switch_to is None
                and (
                    batch is _ONE or batch is _BETWEEN or length_hint(batch[1]) == 0  # type: ignore[index]
                )
                and self._decoder.error is None  # bytes after the batch it refused: re-frame
            ):
                # the last frame of the batch asked, or work between frames: nothing of the
                # batch is left to give back, so the new grammar is installed at once (what
                # a protocol changing state on every frame does); the batch ends as it would
                # have
                old = self._decoder
                decoder = None
                if not old.pending and not old.dropping():
                    # the common case made short (what _install does): the decoder of a
                    # grammar that was current before, found here; only one that takes
                    # the context (a block's size) is fitted by a call
                    cache = self._decoders
                    decoder = None if cache is None else cache.get(id(grammar))
                    if decoder is not None and decoder.grammar is not grammar:
                        decoder = None
                    if decoder is not None and (decoder.sized or context):
                        if batch is not _BETWEEN:
                            self._batch = None  # (before: a bad size raises, batch ended)
                            decoder = self._fitted(decoder, grammar, context or _NO_CONTEXT)
                        else:  # a grammar that cannot frame (a bad size) is refused where a
                            # deferred switch is, once the work ends
                            try:  # (not contextlib.suppress: three calls more)
                                decoder = self._fitted(decoder, grammar, context or _NO_CONTEXT)
                            except Exception:
                                decoder = None
                if decoder is not None:
                    self._batch = None
                    if old.src:  # (the step path leaves none)
                        old.settle()
                    decoder.restart(old.base)
                    self._grammar = grammar
                    self._context = context or _NO_CONTEXT
                    self._decoder = decoder
                    self._budget = 1
                    self._installed = True
                    return
                if batch is _BETWEEN:  # work after a frame: only the short way
                    self._switch_to = (grammar, context or {})
                    self._interrupt = True
                    return
                self._batch = None
                self._install(grammar, context or {})
                return
            self._switch_to = (grammar, context or {})
            self._interrupt = True
            return
        self._install(grammar, context or {})
        if deliver and not self._paused and self.error is None:
            self._run()

    def clear(self) -> bytes:
        """Drop every byte fed but not yet delivered, and the error that stopped the
        framer if one did; return the dropped bytes (Twisted's ``clearLineBuffer``).

        From inside ``on_frame`` it drops the frames after the current one too; framing
        goes on with the bytes fed next, as the start of a frame.
        """
        self._rewind_batch()
        data = self.buffered
        decoder = self._decoder
        draining, self._draining = self._draining, None
        if draining is not None:  # (what it was dropping is dropped with the rest)
            decoder.base = draining.base
        decoder.restart(decoder.base + len(data))
        self._src = b""
        self._pos = 0
        self._held.clear()
        self.error = None
        if self._running:
            self._interrupt = True
        return data

    def pause(self) -> None:
        """Stop delivering frames (after the current one); bytes fed meanwhile are kept."""
        self._paused = True
        if self._running:
            self._interrupt = True

    def after_frame(self, callback: Callable[[], object]) -> bool:
        """From inside ``on_frame``: call ``callback()`` once the callback returns, before
        the next frame is cut (the frames after this one in a batch are given back and cut
        again: with the grammar ``callback`` switches to, if it switches). One callback at
        a time (a second call replaces the first). Returns False, and does nothing,
        outside a callback and during :meth:`eof` (as :meth:`interrupt`)."""
        if self._running and not self._ended:
            self._after = callback
            self._interrupt = True
            return True
        return False

    def after_queue(self, drain: Callable[[], None]) -> list[Callable[[], object]]:
        """A list whose ``append``, from inside ``on_frame``, also asks for ``drain()``
        after the frame (:meth:`after_frame`, with no call more): for work queued by the
        callback that ``drain`` runs (the engine's postponed inputs). Appended to
        elsewhere, it is a list; whoever appended runs ``drain`` then."""
        return AfterQueue(self.after_frame, drain)

    def interrupt(self) -> None:
        """From inside ``on_frame``: return from ``feed`` after this frame.

        The frames not yet delivered stay buffered, exactly as they arrived; ``feed(b"")``
        goes on with them. Lets a caller act between two frames (run work the callback
        queued) without pausing. Outside a callback, and during :meth:`eof`, it does
        nothing.
        """
        if self._running and not self._ended:
            self._stop_batch = True
            self._interrupt = True

    def resume(self) -> None:
        """Deliver the frames held while paused, then carry on as bytes arrive."""
        if not self._paused:
            return
        self._paused = False
        if not self._running and self.error is None:
            self._run(flush=self._ended)
            if self._ended and not self._paused:
                self._finish()

    def eof(self) -> None:
        """The stream ended: an unfinished frame is a :class:`TruncatedFrame` error.

        While paused, the check waits until :meth:`resume` has delivered the held frames.
        """
        if self._running:
            raise RuntimeError("eof() called from inside a framer callback")
        self._ended = True
        if not self._paused and self.error is None:
            self._run(flush=True)  # frames still buffered (after a raised error) come first
            if not self._paused:
                self._finish()

    def _finish(self) -> None:
        decoder = self._decoder
        unread = self._pos < len(self._src) or bool(self._held)
        if self.error is None and (decoder.unfinished() or unread or self._draining is not None):
            self._report(
                TruncatedFrame(
                    f"stream ended inside a frame ({len(self.buffered)} bytes buffered)",
                    offset=self.offset,
                    grammar=self._grammar,
                ),
                fatal=True,
            )

    def encode(self, value: Any) -> bytes:
        """The bytes of ``value`` as a frame of the current grammar."""
        return encode(self._grammar, value, **self._context)

    def _install(self, grammar: Any, context: Mapping[str, Any]) -> None:
        """Make ``grammar`` current; the old decoder's pending bytes come first."""
        old = self._decoder
        base = old.base
        dropping = old.dropping()
        rest = old.take() if old.pending and not dropping else b""
        cache = self._decoders
        if dropping and cache is not None and cache.get(id(old.grammar)) is old:
            del cache[id(old.grammar)]  # (it goes on dropping: not to be restarted for reuse)
        try:
            decoder = self._decoder_for(grammar, base, context)
        except BaseException:
            old.pending += rest  # the grammar cannot frame (a bad size): nothing changes
            if dropping and cache is not None:
                cache[id(old.grammar)] = old
            raise
        if rest:
            self._src = rest + self._src[self._pos :]
            self._pos = 0
        if dropping:
            # the rest of the bad frame is dropped as its own grammar cuts it, however the
            # reads cut the stream: the new grammar starts after it (as when the whole
            # frame came in the read that refused it)
            self._draining = old
        elif old is not decoder:
            old.settle()  # (a decoder kept for reuse keeps no bytes of its own)
        self._grammar = grammar
        self._context = context
        self._decoder = decoder
        self._budget = 1
        self._installed = True

    def _decoder_for(self, grammar: Any, base: int, context: Mapping[str, Any]) -> Decoder:
        """A fresh decoder for ``grammar`` at stream offset ``base``: one made before when
        there is one (see :meth:`_reusable`), else a new one, kept for reuse when it can
        be."""
        decoder = self._reusable(grammar, context)
        if decoder is not None:
            decoder.restart(base)
            return decoder
        decoder = make_decoder(grammar, base, context, self.max_length, self.fast)
        kind = type(grammar)
        if (decoder.sized or (kind in _CONTEXT_FREE and not context)) and (
            decoder.grammar is grammar
        ):
            cache = self._decoders
            if cache is None or len(cache) >= _CACHED_DECODERS:
                cache = self._decoders = {}
            cache[id(grammar)] = decoder
        return decoder

    def _reusable(self, grammar: Any, context: Mapping[str, Any]) -> Decoder | None:
        """The decoder made before for ``grammar`` (protocols switch back and forth between
        a few grammars), to be restarted: as it was when it needs no context; a block whose
        size comes from the context gets the size it has now. ``None`` if there is none."""
        cache = self._decoders
        if cache is None:
            return None
        decoder = cache.get(id(grammar))
        if decoder is None or decoder.grammar is not grammar:
            return None
        return self._fitted(decoder, grammar, context)

    @staticmethod
    def _fitted(decoder: Decoder, grammar: Any, context: Mapping[str, Any]) -> Decoder | None:
        """``decoder``, made before for ``grammar``, for ``context``: a block whose size
        comes from the context gets the size it has now; one that takes no context is
        refused a context (``None``)."""
        if decoder.sized:
            if type(grammar.size) is not int:
                decoder.size = grammar.size_in(context)  # type: ignore[attr-defined]
            return decoder
        return None if context else decoder

    def _run(self, flush: bool = False) -> None:
        """Deliver frames until the bytes run out or a callback stops it; ``flush``: when
        they run out, have a frame the decoder held back untried tried now."""
        self._running = True
        try:
            if self._interrupt:  # asked for while no batch was delivered (an error callback)
                self._interrupted()  # (inside the try: work that raises leaves it running)
            while True:
                decoder = self._decoder
                draining = self._draining
                if draining is not None and not self._drained(draining, decoder):
                    return
                if self._pos >= len(self._src) and not decoder.eager:
                    if self._held:
                        self._src = bytes(self._held)
                        self._pos = 0
                        self._held.clear()
                    elif flush and decoder.retry():
                        flush = False  # once: the decoder tries what it has, no byte added
                    else:
                        # every byte read is framed or pending: keep no reference to the
                        # reads (a 100 MiB one would stay alive until the next read)
                        self._src = b""
                        self._pos = 0
                        decoder.settle()
                        return
                if decoder.blocked:
                    return
                if self._budget < _STEPS and not decoder.pending:
                    # just after a switch: one frame at a time, cut by the step path without
                    # a batch's bookkeeping (a request's few frames before the next switch
                    # cost less so than in a batch)
                    frame = decoder.one(self._src, self._pos)
                    if frame is not None:
                        self._pos = decoder.end
                        self._batch = _ONE
                        try:
                            self.on_frame(frame)
                        except BaseException:
                            self._raised()
                            raise
                        self._batch = None
                        if self._interrupt:
                            if self._interrupted():
                                return
                        elif self._installed:
                            self._installed = False
                        else:
                            self._budget += 1
                        continue
                frames = decoder.feed(self._src, self._pos, self._budget)
                self._src = decoder.src
                self._pos = decoder.end
                if frames:
                    if self._deliver(decoder, frames):
                        self._budget = 1
                        if self._interrupted():
                            return
                        continue
                    if self._installed:  # a switch made at the batch's end: batches of 1
                        self._installed = False
                    else:
                        self._budget = min(self._budget * 2, _MAX_BATCH)
                if decoder.error is not None and not self._recover(decoder):
                    return
        finally:
            self._running = False

    def _drained(self, draining: Decoder, decoder: Decoder) -> bool:
        """Drop what is left of the bad frame ``draining`` was dropping when the grammar
        changed; True once it is all gone (``decoder`` then starts where it ended), False
        when the bytes ran out first."""
        while True:
            self._pos = draining.drop(self._src, self._pos)
            if not draining.dropping():
                self._draining = None
                draining.settle()
                decoder.base = draining.base
                return True
            if not self._held:
                self._src = b""
                self._pos = 0
                return False
            self._src = bytes(self._held)
            self._pos = 0
            self._held.clear()

    def _deliver(self, decoder: Decoder, frames: list[Any]) -> bool:
        """Call ``on_frame`` for each frame; True if a callback interrupted the batch."""
        on_frame = self.on_frame
        remaining = iter(frames)
        self._batch = (len(frames), remaining)
        try:
            for frame in remaining:
                on_frame(frame)
                if self._interrupt:
                    self._rewind_batch()
                    return True
        except BaseException:
            self._raised()
            raise
        self._batch = None
        return False

    def _raised(self) -> None:
        """``on_frame`` raised: the frame counts as delivered; the ones after it wait, for
        the grammar the callback switched to before raising, if it did (as when the switch
        was installed at once)."""
        self._rewind_batch()
        self._interrupt = self._stop_batch = self._ahead = False
        self._after = None
        switch_to, self._switch_to = self._switch_to, None
        if switch_to is not None:
            self._install(*switch_to)

    def _rewind_batch(self) -> None:
        """Give back the bytes of the frames of the batch not yet delivered."""
        batch = self._batch
        if batch is not None:
            self._batch = None
            if batch is not _ONE and batch is not _BETWEEN:  # nothing to give back
                assert isinstance(batch, tuple)
                size, remaining = batch
                self._pos = self._decoder.rewind(size - length_hint(remaining))

    def _interrupted(self) -> bool:
        """Act on what a callback asked for — a switch, then work after it (which may ask
        for more), a pause; True to stop running."""
        self._ahead = False
        while True:
            self._interrupt = False
            if self._switch_to is not None:  # (asked before the work: it comes first)
                grammar, context = self._switch_to
                self._switch_to = None
                self._install(grammar, context)
            after = self._after
            if after is None:
                break
            self._after = None
            # between frames, the batch given back: a switch the work makes is installed
            # at once (switch's short way), as one made by the last frame of a batch
            self._batch = _BETWEEN
            try:
                after()
            finally:
                self._batch = None
        stop, self._stop_batch = self._stop_batch, False
        return stop or self._paused or self.error is not None

    def _recover(self, decoder: Decoder) -> bool:
        """Report the decoder's error; True when framing goes on after it."""
        error = decoder.error
        assert error is not None
        if self.policy is Policy.CLOSE or self.on_error is None:
            resume = decoder.skip(self._src, self._pos) if self.policy is Policy.DISCARD else None
            if resume is not None:
                self._pos = resume
            self._report(error, fatal=resume is None)
            return resume is not None and not (self._interrupt and self._interrupted())
        looped = decoder.base == self._looped_at
        self.on_error(error)
        if self._switch_to is not None:
            if looped:
                # the grammar it switched to last time refused the same bytes: switching
                # again could go round for ever without consuming a byte
                self._switch_to = None
                self._interrupt = self._stop_batch = False
                self.error = error
                return False
            # the callback chose the grammar that frames what follows, the bad bytes included
            self._looped_at = decoder.base
            decoder.error = None
            return not self._interrupted()
        resume = decoder.skip(self._src, self._pos)
        if resume is None:
            self.error = error
            return False
        self._pos = resume
        return not (self._interrupt and self._interrupted())

    def _report(self, error: FramingError, *, fatal: bool) -> None:
        if fatal:
            self.error = error
        if self.on_error is None:
            raise error
        self.on_error(error)


def _as_bytes(data: object) -> bytes:
    """``data``, a bytes-like object, as bytes; anything else is a ``TypeError`` (``bytes``
    would turn an int into that many NULs and a list of ints into bytes)."""
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"feed() takes a bytes-like object, not {type(data).__name__}") from None
    return view.tobytes()


def encode(grammar: Any, value: Any, **context: Any) -> bytes:
    """The bytes of ``value`` as a frame of ``grammar``.

    Lines, netstrings and raw frames of valid bytes are put together directly (construct's
    ``build`` costs about 1.5 µs a frame); anything else, and every value the grammar would
    refuse, goes through the grammar's own ``build``, which gives its errors.
    """
    if context:
        data: bytes = grammar.build(value, **context)
        return data
    return encode_frame(grammar, value)


def encode_frame(grammar: Any, value: Any) -> bytes:
    """:func:`encode` without a context (what a protocol's ``send`` calls per frame)."""
    if type(value) is bytes:
        kind = type(grammar)
        if kind is Line:
            if len(value) <= grammar.max_length:
                wire: bytes = value + grammar.delimiter
                if wire.find(grammar.delimiter) == len(value):
                    return wire
        elif kind is Netstring:
            if len(value) <= grammar.max_length:
                return b"%d:%s," % (len(value), value)
        elif kind is Raw:
            return value
    data: bytes = grammar.build(value)
    return data


def decode(grammar: Any, chunks: Iterable[Buffer], **options: Any) -> list[Any]:
    """Every frame of ``grammar`` in ``chunks``; raises the first framing error.

    A convenience for tests and scripts; ``options`` are :class:`Framer`'s.
    """
    frames: list[Any] = []
    framer = Framer(grammar, frames.append, **options)
    for chunk in chunks:
        framer.feed(chunk)
    return frames
