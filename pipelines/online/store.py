"""The online store's layout, its atomic steps, and how to reach it.

Keys (``<p>`` is ``[online] key_prefix``; the part in braces is a Redis Cluster hash tag):

- ``<p>:c:{<card_key>}``: the card's transactions, a sorted set scored by event time (µs), each
  member ``id \\t cents \\t fraud \\t terminal \\t answer``: the last field is empty for a
  transaction the batch published, and holds the service's answer (JSON) for one it scored, so a
  retry gets the first answer again. Written by the service (one step per request) and by the
  nightly publish (a merge by transaction id); it expires when the card is idle for longer than
  its windows reach.
- ``<p>:t:{<terminal_id>}:<day>``: the terminal's transactions over its delayed windows as the
  service needs them on ``<day>``: per instant, the running totals (count, cents, frauds) up to
  it, with labels as known when ``<day>`` began. A window is then two lookups, whatever the
  terminal's size. Written whole by the nightly publish only (a new key per day).
- ``<p>:day:<day>``: written last by the publish for ``<day>``: the generation, when, and the
  Delta versions it read. No marker, no scoring: a store that restarted empty, or a day not yet
  published, is refused, never scored with missing history.

Every step a request makes on a card is one Lua script on the card's one key: atomic, and
allowed on a Redis Cluster. Each script declares itself (``#!lua``): a full store refuses a
writing script before it starts, never halfway through. Numbers in the scripts are Lua doubles: exact for event times in
microseconds and sums of cents below 2^53.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from pipelines.core.config import OnlineSettings
from pipelines.core.errors import ConfigError

URL_ENV, PASSWORD_ENV, PASSWORD_FILE_ENV = "FRAUD_ONLINE_URL", "FRAUD_ONLINE_PASSWORD", "FRAUD_ONLINE_PASSWORD_FILE"
SEP = "\t"

# The card's step: the sums of each window over the card's other entries, the entries at the
# transaction's own instant (the caller orders those by id), and the transaction's own entry if
# its id is already there (a retry); when it is not, the transaction is appended.
# KEYS[1] card key. ARGV: event µs, id, member to append, ttl ms, scan start (exclusive),
# number of windows, then (lo, hi, hi included 0/1) per window.
# Reply: found (0/1), its member, its score, the number of ties, the ties, then 3 sums per window.
CARD_STEP = """#!lua
local key = KEYS[1]
local ts = tonumber(ARGV[1])
local id = ARGV[2]
local n = tonumber(ARGV[6])
local lo, hi, incl = {}, {}, {}
for w = 1, n do
  lo[w], hi[w], incl[w] = tonumber(ARGV[4 + 3 * w]), tonumber(ARGV[5 + 3 * w]), ARGV[6 + 3 * w] == '1'
end
local entries = redis.call('ZRANGEBYSCORE', key, '(' .. ARGV[5], '+inf', 'WITHSCORES')
local sums = {}
for i = 1, 3 * n do sums[i] = 0 end
local ties = {}
local found, found_score = '', ''
for j = 1, #entries, 2 do
  local member = entries[j]
  local eid, cents, fraud = string.match(member, '^([^\t]*)\t(%d+)\t(%d+)')
  if eid == id then
    found, found_score = member, entries[j + 1]
  else
    local at = tonumber(entries[j + 1])
    cents, fraud = tonumber(cents), tonumber(fraud)
    if at == ts then ties[#ties + 1] = member end
    for w = 1, n do
      if at > lo[w] and (at < hi[w] or (at == hi[w] and incl[w])) then
        local k = 3 * w
        sums[k - 2] = sums[k - 2] + 1
        sums[k - 1] = sums[k - 1] + cents
        sums[k] = sums[k] + fraud
      end
    end
  end
end
if found == '' then
  redis.call('ZADD', key, ARGV[1], ARGV[3])
  redis.call('PEXPIRE', key, ARGV[4])
end
local reply = {found == '' and 0 or 1, found, found_score, #ties}
for i = 1, #ties do reply[#reply + 1] = ties[i] end
for i = 1, 3 * n do reply[#reply + 1] = string.format('%.0f', sums[i]) end
return reply
"""

# The answer, once scored: the appended member replaced by the same with the answer. KEYS[1]
# card key; ARGV: event µs, the member appended, the member with the answer.
CARD_ANSWER = """#!lua
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

# The nightly merge into one card's history, by transaction id: a new id is added; a known one
# keeps its answer and takes the batch's content where that differs (a label learnt since);
# then what fell out of the longest window is trimmed. Never the key replaced whole: the day's
# online appends stay. KEYS[1] card key; ARGV: trim (drop scores <= it), ttl ms, then
# (event µs, member) pairs. Returns how many entries were added and how many changed.
CARD_MERGE = """#!lua
local key = KEYS[1]
local known = {}
local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
for j = 1, #all, 2 do
  local member = all[j]
  local t1 = string.find(member, '\\t', 1, true)
  known[string.sub(member, 1, t1 - 1)] = {member, all[j + 1]}
end
local added, changed = 0, 0
for i = 3, #ARGV, 2 do
  local ts, member = ARGV[i], ARGV[i + 1]
  local t1 = string.find(member, '\\t', 1, true)
  local old = known[string.sub(member, 1, t1 - 1)]
  if old == nil then
    redis.call('ZADD', key, ts, member)
    added = added + 1
  else
    local cut = 0
    for _ = 1, 4 do cut = string.find(old[1], '\\t', cut + 1, true) end
    local replaced = member .. string.sub(old[1], cut + 1)
    if replaced ~= old[1] or tonumber(old[2]) ~= tonumber(ts) then
      redis.call('ZREM', key, old[1])
      redis.call('ZADD', key, ts, replaced)
      changed = changed + 1
    end
  end
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
if redis.call('EXISTS', key) == 1 then redis.call('PEXPIRE', key, ARGV[2]) end
return {added, changed}
"""

# A terminal's running totals at each bound: those of its last instant at or before it.
# KEYS[1] terminal key of the day; ARGV: bounds (µs). Returns count, cents, frauds per bound.
# Declared read-only: a full store still answers it (and refuses the card's step).
TERMINAL_TOTALS = """#!lua flags=no-writes
local reply = {}
for i = 1, #ARGV do
  local last = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[i], '-inf', 'LIMIT', 0, 1)
  if #last == 0 then
    reply[#reply + 1] = '0'; reply[#reply + 1] = '0'; reply[#reply + 1] = '0'
  else
    local m = last[1]
    local t1 = string.find(m, '\\t', 1, true)
    local t2 = string.find(m, '\\t', t1 + 1, true)
    local t3 = string.find(m, '\\t', t2 + 1, true)
    reply[#reply + 1] = string.sub(m, t1 + 1, t2 - 1)
    reply[#reply + 1] = string.sub(m, t2 + 1, t3 - 1)
    reply[#reply + 1] = string.sub(m, t3 + 1)
  end
end
return reply
"""


def card_key_name(prefix: str, card_key: str) -> str:
    return f"{prefix}:c:{{{card_key}}}"


def terminal_key_name(prefix: str, terminal_id: str, day: str) -> str:
    return f"{prefix}:t:{{{terminal_id}}}:{day}"


def day_key_name(prefix: str, day: str) -> str:
    return f"{prefix}:day:{day}"


def card_member(transaction_id: str, cents: int, fraud: int, terminal_id: str, answer: str = "") -> str:
    return SEP.join((transaction_id, str(cents), str(fraud), terminal_id, answer))


def terminal_member(event_micros: int, count: int, cents: int, frauds: int) -> str:
    return SEP.join((str(event_micros), str(count), str(cents), str(frauds)))


def check_text_key(value: str, what: str) -> str | None:
    """Why ``value`` cannot be part of a key or member (None when it can): a tab or a line end
    would split a member, braces would move the cluster's hash tag."""
    if any(ch in value for ch in "\t\r\n{}"):
        return f"{what} must not hold a tab, a line end or a brace"
    return None


# --- Reaching the store ---------------------------------------------------------------------

@dataclass(frozen=True)
class StoreAddress:
    """Where the store is and its password (never printed: :meth:`shown` is what logs show)."""

    url: str = field(repr=False)
    password: str | None = field(repr=False)
    source: str

    def shown(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path} ({self.source})"


def store_address(online: OnlineSettings, environ: Mapping[str, str] = os.environ) -> StoreAddress | None:
    """The store's URL and password: ``$FRAUD_ONLINE_URL``, else ``[online] url``, else a Cloud
    Foundry binding named ``[online] cf_service`` in ``$VCAP_SERVICES``; None when none is set.

    :raises ConfigError: no password anywhere (the store always requires one), a password file
        readable by others, or a binding without credentials.
    """
    if environ.get(URL_ENV):
        url, source = environ[URL_ENV], f"${URL_ENV}"
    elif online.url:
        url, source = online.url, "[online] url"
    else:
        url, source = _cloud_foundry_url(online.cf_service, environ), f"the Cloud Foundry binding {online.cf_service}"
        if url is None:
            return None
    if urlsplit(url).scheme not in ("redis", "rediss"):
        raise ConfigError(f"the online store's URL ({source}) must start with redis:// or rediss://")
    if environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    elif environ.get(PASSWORD_FILE_ENV):
        password = read_password_file(Path(environ[PASSWORD_FILE_ENV]))
    elif online.password_file and Path(online.password_file).exists():
        password = read_password_file(Path(online.password_file))
    else:
        password = unquote(urlsplit(url).password or "")
    if not password:
        raise ConfigError(f"the online store ({source}) has no password: set ${PASSWORD_ENV}, or name a file "
                          f"readable by its owner only in [online] password_file")
    return StoreAddress(url=url, password=password, source=source)


def read_password_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read the online store's password file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the online store's password file {path} has mode {stat.S_IMODE(mode):04o}: it must be "
                          f"readable by its owner only (chmod 600 {path})")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"the online store's password file {path} is empty")
    return lines[0].strip()


def _cloud_foundry_url(name: str, environ: Mapping[str, str]) -> str | None:
    """The URL of the bound service instance ``name`` in ``$VCAP_SERVICES`` (None: not bound)."""
    if not environ.get("VCAP_SERVICES"):
        return None
    try:
        services = json.loads(environ["VCAP_SERVICES"])
    except ValueError:
        raise ConfigError("$VCAP_SERVICES is not valid JSON") from None
    for instances in services.values():
        for instance in instances:
            if instance.get("name") != name:
                continue
            credentials = instance.get("credentials") or {}
            if credentials.get("uri"):
                return credentials["uri"]
            if credentials.get("host"):
                tls = bool(credentials.get("tls_port") or credentials.get("tls"))
                port = credentials.get("tls_port") or credentials.get("port") or 6379
                secret = credentials.get("password")
                auth = f":{quote(secret, safe='')}@" if secret else ""
                return f"{'rediss' if tls else 'redis'}://{auth}{credentials['host']}:{port}/0"
            raise ConfigError(f"the Cloud Foundry service {name} is bound but has neither credentials.uri nor "
                              f"credentials.host")
    return None
