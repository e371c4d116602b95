"""Real protocols built on statewire's declared machines: the protocol's states and rules
live here; applications give them their commands (see :mod:`statewire.protocols.resp`)."""
