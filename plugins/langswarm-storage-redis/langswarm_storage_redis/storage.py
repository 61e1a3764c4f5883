"""``RedisSessionStorage``: redis-py's asyncio client, atomic writes through Lua scripts.

Key layout (``P`` is ``key_prefix``, default ``langswarm:``)::

    P session:<session_id>          hash: record (JSON), user_id, updated_at, version,
                                    next_seq (the per-session seq counter); after a
                                    commit_turn with a record update also u_in, u_out,
                                    u_cached (usage totals) and pstate (provider state),
                                    which override the record's until the next save
    P messages:<session_id>         sorted set: score = seq, member = message JSON
    P user:<user_id>                sorted set: score = updated_at, member = session_id
    P sessions                      sorted set: every session, score = updated_at
    P write:<token>                 string: what became of one write of messages (its
                                    first seq, or "fenced"); expires after a minute or
                                    two (2 x socket_timeout + connect timeout + 60 s)
    P blob:<sha256>                 string: the bytes of an image or file, once per prefix
    P blobrefs:<sha256>             set: the sessions that reference the blob
    P sessionblobs:<session_id>     set: the blobs the session references
    P schema                        string: the layout version (``scripts.SCHEMA_VERSION``;
                                    absent: 1, release 0.1.0's)

A message member holds the message's parts (``parts``) only when it has some, and media
parts without their bytes (``sha256`` and ``size`` kept): text-only messages are stored
as they were before parts existed, and a blob is stored once however many messages and
sessions send it. Deleting the last session that references a blob deletes it.

With ``ttl_seconds`` the session hash and its messages expire together, refreshed on
every write, and the session's blobs live at least as long; index entries of expired
sessions are dropped lazily by ``list_sessions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter

from langswarm_runtime.errors import ConcurrencyError, SessionNotFound, StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.parts import Part
from langswarm_runtime.session.storage.base import ISessionStorage, pending_seqs
from langswarm_runtime.session.storage.blobs import blob_refs, split_media
from langswarm_runtime.session.text import check_message
from langswarm_storage_redis import scripts
from langswarm_storage_redis.config import RedisStorageConfig

__all__ = ["RedisSessionStorage"]

#: The public operation each script serves, for error messages.
_SCRIPT_CALLERS = {
    "CREATE": "create_session", "SAVE": "save_session", "DELETE": "delete_session",
    "APPEND": "append_messages", "COMMIT": "commit_turn", "SET_STATUS": "update_message_status",
    "TAIL": "load_messages", "LIST": "list_sessions", "RESOLVE": "resolving a lost reply",
    "SCHEMA": "connect",
}  # fmt: skip
_PARTS: TypeAdapter[list[Part]] = TypeAdapter(list[Part])
#: Hash fields a record is read from (see the key layout above).
_RECORD_FIELDS = ["record", "version", "u_in", "u_out", "u_cached", "pstate", "updated_at"]


class _Attempt:
    """Whether the current write's request has started on its way to the server."""

    sent = False


_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "langswarm_redis_attempt", default=None
)


def _tracking(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` that marks the current ``_Attempt`` sent once it is connected
    and about to write: a failure before that point (refused, unreachable) is known not
    to have reached the server, one after it is not."""

    class Tracking(connection_class):  # type: ignore[misc]
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            if not self.is_connected:
                await self.connect()
            attempt = _ATTEMPT.get()
            if attempt is not None:
                attempt.sent = True
            await super().send_packed_command(command, check_health)

    Tracking.__name__ = Tracking.__qualname__ = f"Tracking{connection_class.__name__}"
    return Tracking


class RedisSessionStorage(ISessionStorage):
    """Sessions in Redis, shared safely by many processes on many hosts.

    ``RedisSessionStorage(url="redis://localhost:6379/0")`` in code, or
    ``storage: {type: redis, url: ...}`` in swarm.yaml. Connects on first use (or on
    ``await storage.open()``).
    """

    def __init__(self, config: RedisStorageConfig | None = None, /, **options: Any) -> None:
        if config is None:
            config = RedisStorageConfig(**options)
        elif options:
            raise TypeError("pass either a RedisStorageConfig or keyword options")
        self.config = config
        self._p = config.key_prefix
        self._ttl = config.ttl_seconds or 0
        # A write token must outlive the resolution of a lost reply: noticed at most
        # socket_timeout after the write ran, resolved within the next connect + read.
        self._token_ttl = int(2 * config.socket_timeout + config.socket_connect_timeout) + 60
        self._where = _describe(config.url.get_secret_value())
        self._client: Any = None
        #: A client that returns bytes as they are (``_client`` decodes replies as
        #: text), for reading blobs; made on first use.
        self._raw: Any = None
        self._scripts: dict[str, Any] = {}
        #: Whether the prefix's layout version was checked (see ``_check_schema``).
        self._schema_checked = False
        self._schema_lock = asyncio.Lock()
        #: Whether writes are seen leaving (see ``_tracking``); if not, every connection
        #: error of a write is treated as possibly applied, and resolved.
        self._sends_tracked = True
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisSessionStorage({self._where}, key_prefix={self._p!r})"

    # -- keys --------------------------------------------------------------------------

    def _k_session(self, sid: str) -> str:
        return f"{self._p}session:{sid}"

    def _k_messages(self, sid: str) -> str:
        return f"{self._p}messages:{sid}"

    def _k_user(self, uid: str) -> str:
        return f"{self._p}user:{uid}"

    def _k_write(self, token: str) -> str:
        return f"{self._p}write:{token}"

    def _k_blob(self, sha256: str) -> str:
        return f"{self._p}blob:{sha256}"

    def _k_session_blobs(self, sid: str) -> str:
        return f"{self._p}sessionblobs:{sid}"

    @property
    def _k_all(self) -> str:
        return f"{self._p}sessions"

    # -- connection --------------------------------------------------------------------

    def _get_client(self) -> Any:
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        if self._client is None:
            import redis.asyncio as aioredis  # lazy: only users of this storage pay for it
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = aioredis.Redis.from_url(
                self.config.url.get_secret_value(),
                decode_responses=True,
                socket_timeout=self.config.socket_timeout,
                socket_connect_timeout=self.config.socket_connect_timeout,
                max_connections=self.config.max_connections,
                # No automatic retry: a script whose reply was lost may have run, and
                # running an append twice would duplicate messages. The caller gets a
                # StorageError and the turn is retried (or not) at the session level.
                retry=Retry(NoBackoff(), 0),
            )
            pool = self._client.connection_pool
            pool.connection_class = _tracking(pool.connection_class)
            self._scripts = {
                name: self._client.register_script(getattr(scripts, name))
                for name in scripts.__all__
            }
        return self._client

    async def _ready(self, what: str) -> Any:
        """The client, once the prefix's layout is known to be one this version reads."""
        client = self._get_client()
        if not self._schema_checked:
            await self._check_schema(what)
        return client

    async def _check_schema(self, what: str) -> None:
        """Refuse a prefix written by a newer version (it may hold what this one cannot
        read, or misreads); record this version otherwise. Once per instance."""
        async with self._schema_lock:
            if self._schema_checked:
                return
            with self._translate(what):
                newer = await self._scripts["SCHEMA"](
                    keys=[f"{self._p}schema"], args=[scripts.SCHEMA_VERSION]
                )
            if newer:
                raise StorageError(
                    f"Redis at {self._where}: key prefix {self._p!r} is at schema version "
                    f"{newer}, newer than this langswarm-storage-redis (schema version "
                    f"{scripts.SCHEMA_VERSION}): upgrade langswarm-storage-redis to use it; "
                    "nothing was written"
                )
            self._schema_checked = True

    async def _read(self, what: str, add: Callable[[Any], None]) -> list[Any]:
        """The replies to the reads ``add`` puts on a pipeline, in one round trip. On the
        instance's first use the schema marker is read in the same round trip, so a
        fresh store's first read costs what a plain client's does; a marker other than
        this version's goes through the full check (refused if newer, recorded if older:
        this version reads the older layouts) before the replies are used."""
        client = self._get_client()
        checking = not self._schema_checked
        pipe = client.pipeline(transaction=False)
        if checking:
            pipe.get(f"{self._p}schema")
        add(pipe)
        with self._translate(what):
            replies: list[Any] = await pipe.execute()
        if checking:
            if replies.pop(0) == str(scripts.SCHEMA_VERSION):
                self._schema_checked = True
            else:
                await self._check_schema(what)
        return replies

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        await self._ready(_SCRIPT_CALLERS[name])
        with self._translate(_SCRIPT_CALLERS[name]):
            return await self._scripts[name](keys=keys, args=args)

    async def _write(self, name: str, keys: list[str], args: list[Any]) -> int:
        """Run a write of messages (``APPEND`` or ``COMMIT``) under a fresh write token;
        the first seq it assigned, or -1 if the session does not exist.

        When the connection fails after the request went out, the reply is lost but the
        script may have run: RESOLVE asks the server and the answer is the truth."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        what = _SCRIPT_CALLERS[name]
        token = self._k_write(uuid.uuid4().hex)
        try:
            await self._ready(what)  # before the attempt: it writes no messages
        except StorageError as exc:
            raise StorageError(f"{exc} (not applied)") from None
        attempt = _Attempt()
        reset = _ATTEMPT.set(attempt)
        try:
            with self._translate(what):
                try:
                    first = int(await self._scripts[name](keys=[*keys, token], args=args))
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    if not attempt.sent and self._sends_tracked:
                        raise
                else:
                    if not attempt.sent:  # a redis-py that bypasses the hook: from now
                        self._sends_tracked = False  # on, resolve every lost connection
                    if first == -2:  # the token was used: impossible for a fresh uuid4
                        raise StorageError(f"{what}: write token {token} already used")
                    return first
        except StorageError as exc:
            # Refused, unreachable, or a server-side error: the script did not run.
            raise StorageError(f"{exc} (not applied)") from None
        finally:
            _ATTEMPT.reset(reset)
        return await self._resolve(token, what)

    async def _resolve(self, token: str, what: str) -> int:
        """The first seq of the write that carried ``token``, asked of the server (it is
        fenced if it has not run, so it never will); StorageError if it was not applied,
        or if the server cannot be asked in time."""
        loop = asyncio.get_running_loop()
        budget = self.config.socket_connect_timeout + self.config.socket_timeout
        deadline = loop.time() + budget
        while True:
            try:
                outcome = await self._run("RESOLVE", [token], [self._token_ttl])
                break
            except StorageError:
                if loop.time() >= deadline:
                    raise StorageError(
                        f"Redis at {self._where}: {what}: outcome unknown: the connection "
                        "was lost after the write was sent and the server could not be "
                        f"asked within {budget:g}s whether it ran"
                    ) from None
                await asyncio.sleep(0.1)
        if outcome == "fenced":
            raise StorageError(
                f"Redis at {self._where}: {what} failed: the connection was lost and the "
                "server had not run the write (now fenced off), so it was not applied"
            )
        return int(outcome)

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn redis-py errors into StorageError naming host:port, never the URL."""
        from redis.exceptions import RedisError

        try:
            yield
        except RedisError as exc:
            raise StorageError(
                f"Redis at {self._where}: {what} failed: {type(exc).__name__}"
                + _reason(exc, self.config.url.get_secret_value())
            ) from None
        except OSError as exc:
            raise StorageError(
                f"Redis at {self._where}: {what} failed: {type(exc).__name__}"
            ) from None

    async def open(self) -> None:
        """Check the server answers and the key prefix holds data this version reads;
        ``StorageError`` naming the host if not."""
        client = await self._ready("connect")
        with self._translate("connect"):
            await client.ping()

    async def close(self) -> None:
        """Close the connection pools. Idempotent."""
        self._closed = True
        for client in (self._client, self._raw):
            if client is not None:
                with contextlib.suppress(Exception):  # closing a dead connection may fail
                    await client.aclose()
        self._client = self._raw = None

    # -- sessions ----------------------------------------------------------------------

    async def create_session(self, record: SessionRecord) -> None:
        created = await self._run(
            "CREATE",
            [self._k_session(record.session_id), self._k_all, self._k_user(record.user_id)],
            [_record_json(record), record.user_id, repr(record.updated_at),
             str(record.version), record.session_id, self._ttl],
        )
        if not created:
            raise StorageError(f"session {record.session_id!r} already exists")

    async def load_session(self, session_id: str) -> SessionRecord | None:
        key = self._k_session(session_id)
        [row] = await self._read("load_session", lambda pipe: pipe.hmget(key, _RECORD_FIELDS))
        if row[0] is None:
            return None
        return _record_from(row)

    async def save_session(self, record: SessionRecord) -> None:
        sid = record.session_id
        result = await self._run(
            "SAVE",
            [self._k_session(sid), self._k_messages(sid), self._k_all,
             self._k_user(record.user_id), self._k_session_blobs(sid)],
            [_record_json(record), record.user_id, repr(record.updated_at),
             str(record.version), sid, self._ttl, self._k_user(""), self._p],
        )
        if result[0] == -1:
            raise SessionNotFound(f"session {sid!r} not found")
        if result[0] == -2:
            raise ConcurrencyError(
                f"session {sid!r} changed: stored version {result[1]}, "
                f"saving version {record.version}"
            )
        record.version = int(result[0])

    async def delete_session(self, session_id: str) -> bool:
        existed = await self._run(
            "DELETE",
            [self._k_session(session_id), self._k_messages(session_id), self._k_all,
             self._k_session_blobs(session_id)],
            [session_id, self._k_user(""), self._p],
        )  # fmt: skip
        return bool(existed)

    async def load_blob(self, sha256: str) -> bytes | None:
        """The bytes of a stored image or file, or None."""
        await self._ready("load_blob")
        if self._raw is None:
            import redis.asyncio as aioredis

            self._raw = aioredis.Redis.from_url(
                self.config.url.get_secret_value(),
                socket_timeout=self.config.socket_timeout,
                socket_connect_timeout=self.config.socket_connect_timeout,
                max_connections=self.config.max_connections,
            )
        with self._translate("load_blob"):
            data = await self._raw.get(self._k_blob(sha256))
        return None if data is None else bytes(data)

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[SessionRecord]:
        if limit < 0:
            raise StorageError(f"limit must be >= 0, got {limit}")
        index = self._k_all if user_id is None else self._k_user(user_id)
        client = await self._ready("list_sessions")
        out: list[SessionRecord] = []
        while len(out) < limit:
            want = limit - len(out)
            ids = await self._run("LIST", [index], [cursor or "", want])
            if ids is None:
                raise StorageError(f"unknown cursor: {cursor}")
            if not ids:
                break
            with self._translate("list_sessions"):
                async with client.pipeline(transaction=False) as pipe:
                    for sid in ids:
                        pipe.hmget(self._k_session(sid), _RECORD_FIELDS)
                    rows = await pipe.execute()
                gone = [sid for sid, row in zip(ids, rows, strict=True) if row[0] is None]
                if gone:  # expired by TTL (or deleted meanwhile): drop the index entries
                    await client.zrem(index, *gone)
                    await client.zrem(self._k_all, *gone)
            out += [_record_from(row) for row in rows if row[0] is not None]
            if len(ids) < want:
                break
            live = [sid for sid in ids if sid not in gone]
            if live:  # else keep the cursor: the dropped entries will not come back
                cursor = live[-1]
        return out

    # -- messages ----------------------------------------------------------------------

    async def append_messages(
        self, session_id: str, messages: Sequence[Message]
    ) -> list[Message]:
        return await self._append(session_id, [], messages)

    async def commit_turn(
        self,
        session_id: str,
        pending_seq: int | Sequence[int] | None,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        provider_state: dict[str, Any] | None = None,
    ) -> list[Message]:
        """Remove the placeholders (one seq, or a tool turn's several), append
        ``messages`` and, with ``usage`` / ``provider_state``, update the record: one
        Lua script (``COMMIT``)."""
        pending = pending_seqs(pending_seq)
        if usage is None and provider_state is None:
            return await self._append(session_id, pending, messages)
        u = usage or Usage()
        state = "" if provider_state is None else json.dumps(provider_state, separators=(",", ":"))
        extra = [u.input_tokens, u.output_tokens, u.cached_tokens, state, repr(time.time())]
        return await self._append(session_id, pending, messages, extra)

    async def _append(
        self,
        session_id: str,
        pending: list[int],
        messages: Sequence[Message],
        commit: list[Any] | None = None,
    ) -> list[Message]:
        """One APPEND, or with ``commit`` (COMMIT's extra arguments) one COMMIT: the
        messages, the bytes of their media and the session's references to them."""
        blobs: dict[str, bytes] = {}
        refs: list[str] = []
        if any(m.parts for m in messages):
            messages, blobs = split_media(messages)
            # The shas with bytes in this write first: the script reads them so.
            refs = [*blobs, *sorted(blob_refs(messages) - set(blobs))]
        bodies = [_body(m) for m in messages]  # InvalidText before anything is sent
        keys = [self._k_session(session_id), self._k_messages(session_id),
                self._k_session_blobs(session_id)]  # fmt: skip
        if commit is not None:
            keys.append(self._k_all)
        args = [",".join(str(int(s)) for s in pending), self._ttl, self._token_ttl,
                session_id, self._p, len(refs), len(blobs), *(commit or []), *refs,
                *blobs.values(), *bodies]  # fmt: skip
        first = await self._write("APPEND" if commit is None else "COMMIT", keys, args)
        if first == -1:
            raise SessionNotFound(f"session {session_id!r} not found")
        return [m.model_copy(update={"seq": int(first) + i}) for i, m in enumerate(messages)]

    async def load_messages(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:
        if last is not None and last < 0:
            raise StorageError(f"last must be >= 0, got {last}")
        if last == 0:
            return []
        key = self._k_messages(session_id)
        low = "-inf" if after_seq is None else f"({after_seq}"
        wanted = None if statuses is None else {str(MessageStatus(s)) for s in statuses}
        if last is not None and wanted is not None:
            members = await self._run("TAIL", [key], [last, low, *sorted(wanted)])
            members.reverse()
        elif last is not None:  # newest N straight from the sorted set: O(log n + N)
            [members] = await self._read(
                "load_messages",
                lambda pipe: pipe.zrevrangebyscore(key, "+inf", low, start=0, num=last),
            )
            members.reverse()
        else:
            [members] = await self._read(
                "load_messages", lambda pipe: pipe.zrangebyscore(key, low, "+inf")
            )
        result = [Message.model_validate_json(m) for m in members]
        if wanted is not None and last is None:
            result = [m for m in result if str(m.status) in wanted]
        return result

    async def update_message_status(
        self, session_id: str, seqs: Sequence[int], status: MessageStatus
    ) -> None:
        if seqs:
            await self._run(
                "SET_STATUS",
                [self._k_messages(session_id)],
                [str(MessageStatus(status)), *(str(int(s)) for s in seqs)],
            )


def _record_json(record: SessionRecord) -> str:
    # The version lives in its own hash field, the one the scripts check.
    return record.model_dump_json(exclude={"version"})


def _record_from(row: Sequence[str | None]) -> SessionRecord:
    """A record from the ``_RECORD_FIELDS`` of its hash: the JSON, overlaid with what
    commits changed since the last save."""
    data, version, u_in, u_out, u_cached, pstate, updated_at = row
    assert data is not None
    fields = json.loads(data)
    fields["version"] = int(version or 0)
    if u_in is not None:  # a commit_turn updated the record
        fields["usage"] = {"input_tokens": int(u_in), "output_tokens": int(u_out or 0),
                           "cached_tokens": int(u_cached or 0)}  # fmt: skip
        if updated_at is not None:
            fields["updated_at"] = float(updated_at)
    if pstate is not None:
        fields["provider_state"] = json.loads(pstate)
    return SessionRecord.model_validate(fields)


def _body(message: Message) -> str:
    """A message's JSON after ``{"seq":N,`` (the script adds that), status first; its
    parts only when it has some (a text-only message is stored as before parts)."""
    check_message(message)  # InvalidText: a lone surrogate would make the JSON unreadable
    fields = message.model_dump(mode="json", exclude={"seq", "status", "parts"})
    if message.parts:
        fields["parts"] = _PARTS.dump_python(message.parts, mode="json", exclude_none=True)
    text = json.dumps({"status": str(message.status), **fields}, separators=(",", ":"))
    return text[1:]


def _describe(url: str) -> str:
    """``host:port/db`` of a Redis URL, for messages: never the user or password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "<unparsable url>"
    db = parts.path.lstrip("/") or "0"
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    return f"{host}:{port}/{db}"


def _reason(exc: Exception, url: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return f": {text}" if text else ""
