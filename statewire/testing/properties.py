"""One-line property checks for grammars (and protocols), to call from a test function.

>>> from construct import Int8ub, Struct
>>> def test_my_grammar():
...     assert_round_trip(Struct("kind" / Int8ub))
...     assert_chunking_invariant(Struct("kind" / Int8ub))

Each runs a Hypothesis test (``hypothesis.given``) over the values
:func:`~statewire.testing.strategies.from_grammar` derives, with the settings of the active
profile, and raises the failure Hypothesis found (an ``AssertionError`` naming the
falsifying value, shrunk) or :class:`~statewire.testing.strategies.UnsupportedGrammar`.
Call them from ordinary test functions, not from inside another ``@given`` test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from statewire.framing import FramingError, decode
from statewire.machine import is_declared
from statewire.testing.strategies import chunkings, from_grammar

#: Most values encoded into the stream ``assert_chunking_invariant`` cuts.
MAX_VALUES = 5


def _round_trip_problem(grammar: Any, value: Any, params: Mapping[str, Any]) -> str | None:
    """What is wrong with building ``value`` and parsing it back, or None."""
    try:
        wire = grammar.build(value, **params)
    except Exception as error:
        return f"{value!r} does not build: {type(error).__name__}: {error}"
    try:
        parsed = grammar.parse(wire, **params)
    except Exception as error:
        return f"{value!r} builds {wire!r}, which does not parse: {type(error).__name__}: {error}"
    if parsed != value:
        return f"{value!r} builds {wire!r}, which parses back as {parsed!r}"
    return None


def assert_round_trip(grammar: Any, context: Mapping[str, Any] | None = None) -> None:
    """Check that every value of ``grammar`` builds and parses back equal.

    ``context`` is passed to ``build`` and ``parse`` (``grammar.build(value, **context)``).
    Raises ``AssertionError`` for the (shrunk) falsifying value.
    """
    values = from_grammar(grammar, context)
    params = dict(context or {})

    @given(value=values)
    def round_trip(value: Any) -> None:
        problem = _round_trip_problem(grammar, value, params)
        if problem is not None:
            raise AssertionError(problem)

    round_trip()


def assert_chunking_invariant(
    grammar: Any,
    context: Mapping[str, Any] | None = None,
    *,
    factory: Any = None,
    frames: Mapping[Any, st.SearchStrategy[Any]] | None = None,
) -> None:
    """Check that a :class:`~statewire.framing.Framer` cuts the same frames out of a
    stream of several values of ``grammar`` however the stream is cut into reads.

    Given a declared protocol class instead of a grammar, check the protocol: sessions
    walked on its diagram, replayed in arbitrary reads, write the same bytes and end in the
    same state (:func:`statewire.testing.model.check_chunking`; ``factory`` becomes each
    connection's factory, ``frames`` maps inputs to strategies of their frames as for
    :func:`~statewire.testing.model.protocol_state_machine`).

    The frames of one read of the whole stream are the reference; values that build to no
    bytes are left out of the stream (a framer cannot deliver empty frames). A grammar whose
    frames depend on where reads end (``raw()``, a ``GreedyBytes`` or an absent
    ``Optional`` at the end of a Struct) fails, as it should.
    """
    if is_declared(grammar):
        from statewire.testing.model import check_chunking

        check_chunking(grammar, factory=factory, frames=frames)
        return
    if frames is not None:
        raise TypeError("frames= applies to a declared protocol, not to a grammar")
    values = st.lists(from_grammar(grammar, context), min_size=1, max_size=MAX_VALUES)
    params = dict(context or {})

    @given(data=st.data())
    def chunking_invariant(data: st.DataObject) -> None:
        frames = [grammar.build(value, **params) for value in data.draw(values, label="values")]
        wire = b"".join(frames)
        assume(wire)
        whole = _framed(grammar, [wire], params)
        reads = data.draw(chunkings(wire), label="reads")
        cut = _framed(grammar, reads, params)
        problem = None
        if isinstance(whole, str):
            problem = f"{wire!r} does not frame in one read: {whole}"
        elif cut != whole:
            problem = f"cut into {reads!r}: {cut!r}; in one read: {whole!r}"
        if problem is not None:
            raise AssertionError(problem)

    chunking_invariant()


def _framed(grammar: Any, reads: list[bytes], params: Mapping[str, Any]) -> list[Any] | str:
    """The frames a framer delivers from ``reads``, or what its error says."""
    try:
        return decode(grammar, reads, context=params)
    except FramingError as error:
        return f"{type(error).__name__}: {error}"
