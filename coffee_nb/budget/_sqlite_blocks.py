"""Blocks: headroom a SQLite ledger holds in the file for its own process, so that a stream of calls
reserves in memory and writes the file once per call (its commit) instead of twice.

A block is a row of ``leases`` (id ``block:…``) held on every bucket its calls spend on. Other
kernels see all of it as held, so every check they make stays exact against what this process may
spend. Reservations taken from it live in memory only. A commit records the call and adds its cost to
the block's ``spent`` column in one transaction: the money moves from held to spent *within the row*,
``spent + held`` of every bucket is unchanged, so nothing else is written. Readers add a block's
``spent`` to its buckets' spend (and take it from their holds); deleting or folding a block moves it
into ``buckets`` for good (triggers in ``_sqlite_file``).

What keeps the guarantees:

- a crash loses no committed spend: it is in the block's row (and the call in ``calls``), written by the
  commit's own transaction; when the dead kernel's block expires, whoever purges it folds its spend in;
- a hard limit is never overrun: a block is granted under the same check as a reservation, and only while
  every hard limit it counts against has at least ``_FAR`` worst cases of headroom left (then for at most
  ``_GROW_CALLS`` worst cases, and ``1/_SHARE`` of that headroom); a cost beyond what was reserved grows
  the block's hold in the commit's transaction;
- near a cap (less than ``_FAR`` worst cases left) every reservation is exact, as before blocks: a kernel
  whose block runs out there gives it back and reserves exactly; a refused reservation first gives back
  the unused part of this kernel's blocks; a reservation still out of a block given back returns what it
  held when it settles (the last one deletes the row);
- a key earns a block only once it is hot (``_HOT`` reservations less than ``_HOT_GAP`` seconds apart):
  a notebook's occasional call holds nothing beyond itself, and another kernel sees its holds exactly.

The cost, exactly: other kernels count a kernel's unused block as held ("reserved") until that kernel's
next call that the block can't cover, its exit or close, or the block's expiry (its reservations'
``lease_ttl`` and at most a minute more). So a second kernel can be refused early near a cap, by at most
the unused part of an idle kernel's block: ``_GROW_CALLS`` worst cases of that kernel's calls.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

__all__ = ["SPEND_BUCKETS", "Block", "Blocks"]

_GROW_CALLS = 16  # a block grows by this many worst cases of the call that asks...
_FAR = 1000  # blocks only while the headroom under every hard limit is at least this many worst cases
_SHARE = 8  # ...and by at most this fraction of the headroom left under the tightest hard limit
_MOST = 10**18  # picodollars: no block grows beyond this (amounts stay far inside SQLite's 64-bit integers)
_SPAN = 60.0  # seconds a block outlives the reservations it was granted for, at most (or one lease_ttl)
_HOT = 4  # reservations of one key in a row, ...
_HOT_GAP = 1.0  # ... each less than this many seconds after the last, before the key earns a block
_KEEP = 16  # blocks kept per process; beyond that, the least recently used one goes back

# every bucket of a JSON list ?3 gets ?2 more spend
SPEND_BUCKETS = (
    "INSERT INTO buckets (ns, bucket, spent) SELECT ?1, value, ?2 FROM json_each(?3) WHERE 1 "
    "ON CONFLICT (ns, bucket) DO UPDATE SET spent = spent + excluded.spent"
)
# the statements blocks add
SPEND = "UPDATE leases SET spent = spent + ?1 WHERE ns = ?2 AND id = ?3"  # (the update trigger skips this)
SPEND_OVER = "UPDATE leases SET spent = spent + ?1, amount = amount + ?4 WHERE ns = ?2 AND id = ?3"
GROW = "UPDATE leases SET amount = amount + ?1, expires = max(expires, ?2) WHERE ns = ?3 AND id = ?4"
NEW = "INSERT INTO leases (ns, id, amount, buckets, expires) VALUES (?,?,?,?,?)"
SHRINK = "UPDATE leases SET amount = amount - ?1 WHERE ns = ?2 AND id = ?3"
RETURN = "DELETE FROM leases WHERE ns = ? AND id = ?"
FOLD = "UPDATE leases SET amount = amount - spent, spent = 0 WHERE ns = ? AND spent != 0"
PENDING = (
    "SELECT j.value, sum(l.spent) FROM leases AS l, json_each(l.buckets) AS j "
    "WHERE l.ns = ? AND l.spent != 0 GROUP BY j.value"
)
# One bucket's spend, blocks' included, without parsing their lists: ?3 is the bucket as JSON. Inside a
# JSON array's text every quote of a string is escaped, so '["b"' or ', "b"' followed by ',' or ']' is an
# element, the bucket itself; and a block's list names each bucket once (see ``Blocks.usable``).
WATCH_ONE = (
    "SELECT coalesce((SELECT spent FROM buckets WHERE ns = ?1 AND bucket = ?2), 0) + "
    "(SELECT coalesce(sum(spent), 0) FROM leases WHERE ns = ?1 AND spent != 0 "
    "AND (instr(buckets, '[' || ?3 || ',') OR instr(buckets, '[' || ?3 || ']') "
    "OR instr(buckets, ', ' || ?3 || ',') OR instr(buckets, ', ' || ?3 || ']')))"
)

Key = tuple[tuple[str, ...], tuple[tuple[str, int], ...]]  # (buckets held, hard checks) of a reservation


@dataclass(slots=True, eq=False)
class Block:
    """One block as this process sees it: what of its row is neither spent nor reserved (``free``), what
    is reserved from it (``inflight``), and the row's expiry (reservations expiring later don't fit)."""

    id: str
    buckets: tuple[str, ...]
    json: str
    expires: float
    free: int = 0
    inflight: int = 0
    used: float = 0.0
    retired: bool = False  # given back while reservations were out: each one settling gives its part back

    def fits(self, amount: int, expires: float) -> bool:
        return amount <= self.free and expires <= self.expires


@dataclass(slots=True)
class _Heat:
    last: float = float("-inf")
    streak: int = 0


@dataclass(slots=True)
class Blocks:
    """This process's blocks (by key) and the reservations taken from them (by lease id)."""

    by_key: dict[Key, Block] = field(default_factory=dict)
    leases: dict[str, tuple[Block, int]] = field(default_factory=dict)
    heat: dict[Key, _Heat] = field(default_factory=dict)

    def take(self, key: Key, lease_id: str, amount: int, expires: float, now: float) -> bool:
        """Reserve from the key's block in memory, if it has room; False: ask the file."""
        block = self.by_key.get(key)
        if block is None or not block.fits(amount, expires):
            return False
        block.free -= amount
        block.inflight += amount
        block.used = now
        self.leases[lease_id] = (block, amount)
        return True

    def hot(self, key: Key, now: float) -> bool:
        """Count a reservation of ``key`` that the file serves; has the key earned a block? (Never when it
        names a bucket twice: a block's list names each once.)"""
        heat = self.heat.get(key)
        if heat is None:
            if len(self.heat) > 256:  # keys change with each period: forget the old ones
                self.heat.clear()
            heat = self.heat[key] = _Heat()
        heat.streak = heat.streak + 1 if 0 <= now - heat.last < _HOT_GAP else 1
        heat.last = now
        return (heat.streak >= _HOT and len(set(key[0])) == len(key[0])) or key in self.by_key

    def settle(self, lease_id: str, amount: int | None) -> None:
        """The reservation ends: committed at ``amount`` (the block's ``spent`` grew by it; any cost beyond
        the reservation and the free part was added to the hold) or released (None)."""
        block, reserved = self.leases.pop(lease_id)
        block.inflight -= reserved
        block.free = max(0, block.free + reserved - (amount or 0))

    @staticmethod
    def over(block: Block, reserved: int, amount: int) -> int:
        """How much a commit of ``amount`` exceeds what its reservation and the block's free part cover."""
        return max(0, amount - reserved - block.free)


def grant_size(amount: int, need: int, head: int | None) -> int | None:
    """How much a block grows for a reservation of ``amount`` that needs ``need`` more than its free part,
    with ``head`` picodollars left under the tightest hard limit (None: no hard limit). None: no block now;
    the caller reserves exactly."""
    if head is not None and head < _FAR * amount:
        return None  # near the cap every reservation is exact: no kernel is refused while headroom remains
    share = _MOST if head is None else head // _SHARE
    if need > share:
        return None
    return max(need, min(_GROW_CALLS * amount, share, _MOST))


def new_block(buckets: tuple[str, ...], expires: float, now: float) -> Block:
    return Block(f"block:{uuid.uuid4().hex}", buckets, json.dumps(list(buckets)), block_expiry(expires, now))


def block_expiry(expires: float, now: float) -> float:
    """A block outlives the reservation it is granted for by one lease time-to-live, at most ``_SPAN``."""
    return expires + min(max(expires - now, 0.0), _SPAN)


def to_return(blocks: Blocks, now: float) -> list[Block]:
    """Blocks to give back as a new one is made: idle ones past their use, and the least recently used
    beyond ``_KEEP``; they leave ``by_key`` (reservations still taken from them settle as usual)."""
    gone = [b for b in blocks.by_key.values() if b.inflight == 0 and now - b.used > _SPAN]
    ranked = sorted((b for b in blocks.by_key.values() if b not in gone), key=lambda b: b.used)
    gone += ranked[: max(0, len(ranked) - _KEEP + 1)]
    for key in [k for k, b in blocks.by_key.items() if b in gone]:
        del blocks.by_key[key]
    return gone
