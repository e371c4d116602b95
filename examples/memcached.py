"""memcached: an in-memory memcached on statewire's memcache server, with an LRU memory limit.

The connection's states (a command line; a data block of the announced size; an oversize
block dropped as it arrives) are the library's declared machine,
:class:`statewire.protocols.memcache.MemcacheServer`, and what each command does is the
library's too; this file is only the store: items in least-recently-used order, evicted
from the oldest when the memory limit (``--memory`` MiB, 64 by default, as memcached's
``-m``) is reached, expired lazily on the connection's clock. ``pymemcache`` and the
sessions the tests replay against a real ``memcached`` see memcached's replies.

    set add replace append prepend cas get gets gat gats delete incr decr touch
    flush_all version verbosity stats quit mg ms md ma mn me

The meta commands take memcached's common flags, with its recache protocol (``mg N`` and
``R``, ``md I``, ``ms I``: the ``W``, ``Z`` and ``X`` flags), base64 keys (``b``), and
``mg h`` and ``l`` (fetched before; seconds since the last access), which the server
records on the very item :meth:`LRUStore.get` returns.

python examples/memcached.py --port 11311 [--memory 64]
statewire serve examples/memcached.py:factory --listen tcp:11311:interface=127.0.0.1
"""

from __future__ import annotations

from collections import OrderedDict

from statewire.protocols.memcache import ITEM_OVERHEAD, Item, MemcacheFactory


class LRUStore:
    """Items by key, least recently used first; ``limit`` bytes of keys, values and
    :data:`~statewire.protocols.memcache.ITEM_OVERHEAD` at most. It counts what only
    it sees (:meth:`stats`): the items it holds, those it evicted, and the lookups that
    found an item expired, or flushed by a delayed ``flush_all`` (one at once is dropped
    whole: memcached keeps such items, counted in ``curr_items``, until a lookup or its
    crawler reaps them)."""

    def __init__(self, limit: int = 64 << 20) -> None:
        self.limit = limit
        self.used = 0
        self.evictions = 0
        self.expired = 0
        self.flushed = 0
        self._items: OrderedDict[bytes, tuple[Item, float]] = OrderedDict()
        self._flush_at: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes, now: float) -> Item | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        item, stored = entry
        flush_at = self._flush_at
        if flush_at is not None and stored <= flush_at <= now:
            self.flushed += 1
            self.delete(key)
            return None
        if item.expires and item.expires <= now:
            self.expired += 1
            self.delete(key)
            return None
        self._items.move_to_end(key)
        return item

    def put(self, key: bytes, item: Item, now: float) -> bool:
        cost = len(key) + len(item.value) + ITEM_OVERHEAD
        if cost > self.limit:
            return False
        self.delete(key)
        while self.used + cost > self.limit:
            oldest = next(iter(self._items))
            self.delete(oldest)
            self.evictions += 1
        self._items[key] = (item, now)
        self.used += cost
        return True

    def delete(self, key: bytes) -> bool:
        entry = self._items.pop(key, None)
        if entry is None:
            return False
        self.used -= len(key) + len(entry[0].value) + ITEM_OVERHEAD
        return True

    def stats(self) -> dict[bytes, int]:
        """The statistics only the store can count, by memcached's names."""
        return {
            b"get_expired": self.expired,
            b"get_flushed": self.flushed,
            b"curr_items": len(self._items),
            b"evictions": self.evictions,
        }

    def flush(self, at: float, now: float) -> None:
        if at <= now:
            self._items.clear()
            self.used = 0
            self._flush_at = None
        else:
            self._flush_at = at  # what is stored until then goes at that time


factory = MemcacheFactory(LRUStore())


def main() -> None:
    from _cli import options, run_with_endpoint

    args = options(
        __doc__,
        extra=lambda parser: parser.add_argument(
            "--memory", type=int, default=64, help="memory limit in MiB (default 64)"
        ),
    )
    factory.storage = LRUStore(args.memory << 20)
    run_with_endpoint(factory, __doc__, args)


if __name__ == "__main__":
    main()
