"""The SQLite ledger's block operations (see ``_sqlite_blocks``): growing or making a block under the write
lock, giving blocks back, and a commit's transaction. A mixin of ``SQLiteLedger``, kept apart so that each
module stays one readable thing; every method runs with the ledger's lock held."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from coffee_nb.budget import _sqlite_blocks as _blk
from coffee_nb.budget._ledger import CallRow, LimitHit
from coffee_nb.budget._sqlite_blocks import SPEND_BUCKETS as _SPEND
from coffee_nb.budget._sqlite_blocks import Block, Blocks, Key

__all__ = ["BlockOps"]


class BlockOps:
    """What a ledger needs of itself to run these (``SQLiteLedger`` has it all)."""

    ns: str
    _ex: Callable[..., sqlite3.Cursor]
    _after: list[Callable[[], object]]
    _blocks: Blocks
    _tidy_at: float

    if TYPE_CHECKING:

        def _rows(self, buckets: Sequence[str]) -> dict[str, tuple[int, int]]: ...
        def _purge(self, now: float) -> int: ...
        def _quoted(self, bucket: str) -> str: ...
        def _rollback(self) -> None: ...
        def _reserve_exactly(
            self, key: Key, lease_id: str, amount: int, expires: float, now: float
        ) -> LimitHit | None: ...

    def _reserve_hot(self, key: Key, lease_id: str, amount: int, expires: float, now: float) -> LimitHit | None:
        """Grow (or make) the key's block and reserve from it; if the headroom left is too small for a
        block, reserve exactly instead (in a transaction; the lock is held)."""
        buckets, checks = key
        if now >= self._tidy_at:
            self._purge(now)
        block = self._blocks.by_key.get(key)
        if block is not None and block.expires <= now:
            block = None  # its row may be purged by now: a new one
        need = amount - (block.free if block is not None else 0)
        head: int | None = None
        if checks:
            rows = self._rows([b for b, _ in checks])
            head = min(limit - sum(rows.get(b, (0, 0))) for b, limit in checks)
        grow = _blk.grant_size(amount, max(need, 0), head)
        if grow is None:
            # near a hard cap: no block; this key's block goes back (its unused part would make other
            # kernels' checks stricter than the real headroom) and the reservation is exact
            if block is not None:
                self._return(block)
            return self._reserve_exactly(key, lease_id, amount, expires, now)
        until = _blk.block_expiry(expires, now)
        ns, ex = self.ns, self._ex
        if block is None or not ex(_blk.GROW, (grow, until, ns, block.id)).rowcount:
            for old in _blk.to_return(self._blocks, now) + ([block] if block is not None else []):
                self._return(old)
            block = _blk.new_block(buckets, expires, now)
            ex(_blk.NEW, (ns, block.id, grow, block.json, block.expires))
            fresh = block

            def install() -> None:
                self._blocks.by_key[key] = fresh

            self._after.append(install)
        grown = block

        def reserve() -> None:
            grown.free += grow
            grown.expires = max(grown.expires, until)
            taken = self._blocks.take(key, lease_id, amount, expires, now)
            assert taken, "a block just grown holds the reservation"

        self._after.append(reserve)
        return None

    def _return(self, block: Block) -> None:
        """Give a block back (in the open transaction): all of it when nothing is reserved from it, else its
        unused part (the row stays for the reservations still out; it expires in time)."""
        if block.inflight == 0:
            self._ex(_blk.RETURN, (self.ns, block.id))
        elif block.free:
            self._ex(_blk.SHRINK, (block.free, self.ns, block.id))
        self._blocks.by_key = {k: b for k, b in self._blocks.by_key.items() if b is not block}

        def forget() -> None:
            block.free = 0
            block.retired = True

        self._after.append(forget)

    def _give_back(self) -> int:
        """Give back the unused part of every block (in the open transaction); how much that was."""
        given = [b for b in self._blocks.by_key.values() if b.free > 0]
        for block in given:
            self._ex(_blk.SHRINK, (block.free, self.ns, block.id))

        def forget() -> None:
            for block in given:
                block.free = 0

        self._after.append(forget)
        return sum(b.free for b in given)

    def _settle_retired(self, block: Block, reserved: int, unused: int) -> None:
        """A reservation from a block given back ends (in the open transaction): the last one deletes the row
        (its spend folded into the buckets), any other gives back what it held and did not spend."""
        if block.inflight <= reserved:
            self._ex(_blk.RETURN, (self.ns, block.id))
        elif unused > 0:
            self._ex(_blk.SHRINK, (unused, self.ns, block.id))

    def _return_all(self) -> None:
        for block in list(self._blocks.by_key.values()):
            self._return(block)

    def _commit_hot(
        self, lease_id: str, amount: int, spend: str, call: CallRow, block: Block, watch: str | None
    ) -> list[int] | None:
        """``_commit`` for the usual case, written out: the cost of a call from a block, within what it holds,
        one bucket watched (or none: the budget knows no warning is within reach)."""
        ns, ex = self.ns, self._ex
        ex("BEGIN IMMEDIATE")
        try:
            if not ex(
                "INSERT OR IGNORE INTO calls (ns, id, model, amount, at, priced) VALUES (?,?,?,?,?,?)",
                (ns, lease_id, call.model, amount, call.at, int(call.priced)),
            ).rowcount:
                ex("ROLLBACK")
                return None
            if not ex(_blk.SPEND, (amount, ns, block.id)).rowcount:
                ex(_SPEND, (ns, amount, spend))
            spent = [] if watch is None else [ex(_blk.WATCH_ONE, (ns, watch, self._quoted(watch))).fetchone()[0]]
            ex("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return spent

    def _commit(
        self,
        lease_id: str,
        amount: int,
        spend: str,
        call: CallRow,
        block: Block | None,
        reserved: int,
        watch: Sequence[str],
    ) -> list[int] | None:
        """Record a call (in a transaction); None if it was recorded already. Then the spend of ``watch``."""
        ns, ex = self.ns, self._ex
        # the unique (ns, id) index makes a second commit a no-op; the insert trigger drops the lease, and
        # the delete trigger its hold (unless it expired already)
        if not ex(
            "INSERT OR IGNORE INTO calls (ns, id, model, amount, at, priced) VALUES (?,?,?,?,?,?)",
            (ns, lease_id, call.model, amount, call.at, int(call.priced)),
        ).rowcount:
            return None
        if block is None:
            ex(_SPEND, (ns, amount, spend))
        else:
            # the hot path: held turns into spent inside the block's row, no bucket is written (a cost beyond
            # what is held grows the hold); if the row is gone (expired, purged), straight to the buckets
            over = Blocks.over(block, reserved, amount)
            if not (
                ex(_blk.SPEND_OVER, (amount, ns, block.id, over)) if over else ex(_blk.SPEND, (amount, ns, block.id))
            ).rowcount:
                ex(_SPEND, (ns, amount, spend))
            elif block.retired:  # what this reservation held and did not spend goes back now
                self._settle_retired(block, reserved, 0 if over else reserved - amount)
        if len(watch) == 1:  # the usual case: one read
            b = watch[0]
            return [ex(_blk.WATCH_ONE, (ns, b, self._quoted(b))).fetchone()[0]]
        rows = self._rows(watch) if watch else {}
        return [rows.get(b, (0, 0))[0] for b in watch]
