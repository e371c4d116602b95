"""Testing helpers for statewire protocols and grammars (needs Hypothesis: the ``testing``
extra). :mod:`statewire.testing.strategies` derives Hypothesis strategies from grammars."""
