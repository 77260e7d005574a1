"""Redis ledger: a team budget shared by many kernels and machines. Reserve/commit are Lua scripts (atomic).

Keys (``P`` = ``coffee_nb:<namespace>``): ``P:spent`` and ``P:held`` hashes bucket → picodollars,
``P:leases`` sorted set id → expiry, ``P:lease`` hash id → "amount|bucket\\tbucket…",
``P:done`` set of committed ids, ``P:calls`` list of JSON rows.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from coffee_nb._shared._paths import StorageError
from coffee_nb.budget._ledger import CallRow, LimitHit
from coffee_nb.budget._unsaved import flush_for
from coffee_nb.errors._errors import ConfigError, redact, remember_secret

_T = TypeVar("_T")

__all__ = ["RedisLedger"]

# One Lua helper, shared by every script: drop a lease and give its hold back to its buckets.
# Amounts go to HINCRBY as the strings they came in as: Lua prints large numbers in exponent form.
_DROP = """
local function drop(p, id)
  local data = redis.call('HGET', p..':lease', id)
  if data then
    local sep = string.find(data, '|', 1, true)
    local neg = '-' .. string.sub(data, 1, sep - 1)
    for b in string.gmatch(string.sub(data, sep + 1), '[^\\t]+') do
      redis.call('HINCRBY', p..':held', b, neg)
    end
    redis.call('HDEL', p..':lease', id)
  end
  redis.call('ZREM', p..':leases', id)
end
"""

# ARGV: prefix, now
_PURGE = (
    _DROP
    + """
local p = ARGV[1]
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p..':leases', '-inf', ARGV[2])) do
  drop(p, id)
end
"""
)

# ARGV: prefix, now, lease_id, amount, expires, nbuckets, buckets..., nchecks, (bucket, limit)...
_RESERVE = (
    _PURGE
    + """
local id, amount, expires = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local nb = tonumber(ARGV[6])
local i = 7 + nb
local nc = tonumber(ARGV[i])
for c = 1, nc do
  local b, limit = ARGV[i + 2 * c - 1], tonumber(ARGV[i + 2 * c])
  local spent = tonumber(redis.call('HGET', p..':spent', b) or '0')
  local held = tonumber(redis.call('HGET', p..':held', b) or '0')
  if spent + held + amount > limit then
    return {b, tostring(limit), tostring(spent), tostring(held)}
  end
end
local buckets = {}
for k = 1, nb do
  local b = ARGV[6 + k]
  buckets[k] = b
  redis.call('HINCRBY', p..':held', b, ARGV[4])
end
redis.call('HSET', p..':lease', id, ARGV[4] .. '|' .. table.concat(buckets, '\\t'))
redis.call('ZADD', p..':leases', expires, id)
return 'OK'
"""
)

# ARGV: prefix, lease_id, amount, call_json, nbuckets, buckets..., nwatch, watch...
_COMMIT = (
    _DROP
    + """
local p, id, amount = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SADD', p..':done', id) == 0 then return false end
drop(p, id)
for k = 1, tonumber(ARGV[5]) do
  redis.call('HINCRBY', p..':spent', ARGV[5 + k], amount)
end
redis.call('RPUSH', p..':calls', ARGV[4])
local nb = tonumber(ARGV[5])
local out = {}
for k = 1, tonumber(ARGV[6 + nb]) do
  out[k] = redis.call('HGET', p..':spent', ARGV[6 + nb + k]) or '0'
end
return out
"""
)

# ARGV: prefix, lease_id
_RELEASE = _DROP + "\ndrop(ARGV[1], ARGV[2])\nreturn 1\n"


_TIMEOUTS = (10, 5)  # socket_timeout, socket_connect_timeout (seconds) unless the URL gives its own
_URL_FORM = "the form is redis://[:password@]host:port/db[?option=value&...], e.g. redis://127.0.0.1:6379/0"
# options whose values must be numbers, with the least each may be, what it means and an example
_NUMBERS = {
    "socket_timeout": (0.0, "a number of seconds > 0", "5", f" (default {_TIMEOUTS[0]} s)"),
    "socket_connect_timeout": (0.0, "a number of seconds > 0", "5", f" (default {_TIMEOUTS[1]} s)"),
    "timeout": (0.0, "a number of seconds > 0", "5", ""),
    "health_check_interval": (-1, "a whole number of seconds >= 0", "30", ""),
    "db": (-1, "a database number >= 0", "0", ""),
    "max_connections": (0, "a whole number > 0", "50", ""),
    "socket_read_size": (0, "a whole number of bytes > 0", "65536", ""),
}
_BOOLEANS = frozenset({"", "0", "1", "true", "false", "t", "f", "yes", "no", "y", "n"})


def _url_problem(url: str, parsers: Mapping[str, Callable[[str], Any]]) -> str | None:
    """What is wrong in the database number or the options of a Redis URL (the part to change, as given),
    or None. ``parsers``: redis-py's, option name -> how it reads the value."""
    parts = urlsplit(url)
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    if db and not db.isdigit():
        return f"the database number after the port is {db!r}; give a number, e.g. /0"
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        parse = parsers.get(name)
        if name in _NUMBERS:
            least, what, example, default = _NUMBERS[name]
            try:
                number = (float if isinstance(least, float) else int)(value)
            except ValueError:
                number = None
            if number is None or not math.isfinite(number) or number <= least:
                return f"{name}={value!r} is not {what}: write e.g. ?{name}={example}, or leave it out{default}"
        elif parse is not None and getattr(parse, "__name__", "") == "to_bool":
            if value.lower() not in _BOOLEANS:
                return f"{name}={value!r} is not true or false: write ?{name}=true or ?{name}=false"
        elif parse is not None:
            try:
                parse(value)
            except (TypeError, ValueError) as exc:
                return f"{name}={value!r} is not a value it takes ({exc})"
    return None


class RedisLedger:
    """A ledger in Redis. Reachability is checked at construction (a PING), and every failure later is a
    ``StorageError`` naming the URL (without its password), what is wrong and what to do."""

    def __init__(self, url: str, *, namespace: str = "default", client: Any = None) -> None:
        try:
            import redis  # lazy: redis
        except ImportError as exc:
            raise ImportError("Redis ledgers need the redis extra: pip install 'coffee_nb[redis]'") from exc
        self.url = url
        self.ns = namespace
        self.prefix = f"coffee_nb:{namespace}"
        self._errors: type[Exception] = redis.RedisError
        password = urlsplit(url).password
        if password:
            remember_secret(password)  # never in an error, a log or a record
        if client is None:
            wrong = _url_problem(url, getattr(redis.connection, "URL_QUERY_ARGUMENT_PARSERS", {}))
            try:
                if wrong is not None:
                    raise ValueError(wrong)
                client = redis.Redis.from_url(url, socket_timeout=_TIMEOUTS[0], socket_connect_timeout=_TIMEOUTS[1])
            except ValueError as exc:
                why = wrong or f"{exc}; {_URL_FORM}"
                raise ConfigError(redact(f"malformed ledger URL {url!r}: {why}")) from None
        self._r = client
        try:
            self._call("could not reach the Redis ledger", client.ping)  # fail now, not on the first call
        except TypeError as exc:  # an option redis-py passes on to its connection, which has no such option
            unknown = re.search(r"argument '(\w+)'", str(exc))
            name = unknown.group(1) if unknown else str(exc)
            raise ConfigError(
                redact(f"malformed ledger URL {url!r}: {name!r} is not an option of Redis URLs (a typo?); remove it")
            ) from None
        self._reserve = client.register_script(_RESERVE)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._purge = client.register_script(_PURGE + "\nreturn 1")

    def __str__(self) -> str:
        # the URL without credentials
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        try:
            port: int | str = parts.port or 6379
        except ValueError:
            port = "?"
        return f"{parts.scheme}://{parts.hostname or '?'}:{port}{parts.path}"

    def __repr__(self) -> str:
        return f"RedisLedger('{self!s}', namespace={self.ns!r})"

    def _call(self, doing: str, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return func(*args, **kwargs)
        except self._errors as exc:
            raise StorageError(
                f"{doing}: the Redis ledger at {self!s} can't be used: {type(exc).__name__}: {exc}; start Redis "
                "there or check the URL, or use another ledger (ledger='sqlite')",
                str(self),
            ) from None

    def reserve(
        self,
        lease_id: str,
        amount: int,
        buckets: Sequence[str],
        checks: Sequence[tuple[str, int]],
        expires: float,
        now: float,
    ) -> None:
        args: list[Any] = [self.prefix, now, lease_id, amount, expires, len(buckets), *buckets, len(checks)]
        for b, limit in checks:
            args += [b, limit]
        result = self._call("could not reserve budget for a call", self._reserve, args=args)
        if result != b"OK" and result != "OK":
            bucket, hit_limit, spent, held = (x.decode() if isinstance(x, bytes) else x for x in result)
            raise LimitHit(bucket, int(float(hit_limit)), int(float(spent)), int(float(held)))

    def commit(
        self, lease_id: str, amount: int, buckets: Sequence[str], call: CallRow, watch: Sequence[str] = ()
    ) -> list[int] | None:
        row = json.dumps([call.lease_id, call.model, call.amount, call.at, call.priced])
        args = [self.prefix, lease_id, amount, row, len(buckets), *buckets, len(watch), *watch]
        out = self._call(f"could not record the cost of a call to {call.model}", self._commit, args=args)
        return None if out is None else [int(v) for v in out]

    def release(self, lease_id: str) -> None:
        self._call("could not release a reservation", self._release, args=[self.prefix, lease_id])

    def spent(self, buckets: Sequence[str]) -> list[int]:
        if not buckets:
            return []
        values = self._call("could not read the spend", self._r.hmget, f"{self.prefix}:spent", list(buckets))
        return [int(v) if v is not None else 0 for v in values]

    def reserved(self, buckets: Sequence[str], now: float) -> list[int]:
        self._call("could not read the reservations", self._purge, args=[self.prefix, now])
        if not buckets:
            return []
        values = self._call("could not read the reservations", self._r.hmget, f"{self.prefix}:held", list(buckets))
        return [int(v) if v is not None else 0 for v in values]

    def reset(self, prefixes: Sequence[str] | None = None) -> None:
        self._call("could not reset the spend", self._reset, prefixes)

    def _reset(self, prefixes: Sequence[str] | None) -> None:
        key = f"{self.prefix}:spent"
        if prefixes is None:
            self._r.delete(key)
            return
        fields = [f for f, _ in self._r.hscan_iter(key) if f.decode().startswith(tuple(prefixes))]
        if fields:
            self._r.hdel(key, *fields)

    def calls(self, limit: int | None = None) -> list[CallRow]:
        key, start = f"{self.prefix}:calls", -limit if limit else 0
        raw = self._call("could not read the call history", self._r.lrange, key, start, -1)
        rows = [json.loads(x) for x in raw]
        return [CallRow(r[0], r[1], int(r[2]), float(r[3]), bool(r[4])) for r in rows]

    def close(self) -> None:
        flush_for(self, "closing the ledger")  # spend still waiting for Redis: now, or said to be lost
        self._r.close()
