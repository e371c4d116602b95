"""statewire: network protocols as state diagrams.

Layers (see ARCHITECTURE.md): :mod:`grammars` (framing grammars, pure construct) and
:mod:`statewire.framing` (sans-IO incremental framing) are the ground floor.
"""

__version__ = "0.1.0.dev0"
