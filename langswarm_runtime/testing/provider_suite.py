"""The provider conformance suite: what every provider adapter, built-in or plugin, must do
for sessions to keep their guarantees, run through ``SessionManager.from_config`` on a real
SQLite file, the official SDK and the loopback emulator.

A plugin author subclasses :class:`ProviderConformance` in a test module, declares a few
class attributes and writes one method, ``wire_messages``, that reads the messages out of
a recorded request body::

    from langswarm_runtime.testing import ProviderConformance

    class TestMyProvider(ProviderConformance):
        provider_type = "myprov"                 # the name it registers
        plugin_module = "myprov_plugin"          # the module with the hookimpl
        sdk_module = "myprov_sdk"                # must not be imported at module import
        api_key_env = ("MYPROV_API_KEY",)
        supports_native = False

        def wire_messages(self, request):
            return [(m["role"], m["content"]) for m in request.json["messages"]]

The emulator must serve the provider's wire API under ``/<emulator_route>``; override the
``provider_config`` fixture for a config block of another shape. Where a provider
genuinely differs, declare it (``fault_errors``, ``retried_faults``,
``sdk_context_cleared``, ``missing_key_sends_request``, ``missing_key_hint``) rather than
dropping a test. Tests that need a native mode skip on providers without one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from langswarm_runtime.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.session.models import MessageStatus, SessionBackend
from langswarm_runtime.testing.provider_helpers import (
    HISTORY,
    collect_stream,
    make_request,
    provider_turn,
    say,
    sqlite_files_contain,
)

__all__ = ["DEFAULT_FAULT_ERRORS", "ProviderConformance"]

HYBRID, NATIVE = SessionBackend.HYBRID, SessionBackend.NATIVE
#: The provider entry's name in the generated swarm.yaml.
ENTRY = "subject"
#: Emulator fault kind -> the typed error a turn must raise (with its status, if HTTP).
DEFAULT_FAULT_ERRORS: dict[str, type[ProviderError]] = {
    "429": ProviderRateLimited,
    "500": ProviderUnavailable,
    "503": ProviderUnavailable,
    "529": ProviderUnavailable,
    "slow": ProviderTimeout,
    "drop": ProviderUnavailable,
    "malformed": ProviderBadResponse,
    "stream_break": ProviderUnavailable,
}
_STATUS = {"429": 429, "500": 500, "503": 503, "529": 529}
_TIMEOUT, _SLOW = 0.5, 2.0  # the small timeout and the emulator's delay for "slow"
_RETRY_AFTER = 0.4  # what the emulator asks for in retried 429s; the wait must honour it


def _words(text: str) -> int:
    return len(text.split())


def _case_id(value: Any) -> str:
    if isinstance(value, bool):
        return "streamed" if value else "plain"
    return str(value)


class ProviderConformance:
    """Base class of the provider conformance tests; see the module docstring."""

    # -- what the subclass declares -------------------------------------------------------
    #: The type name the plugin registers (``type:`` in swarm.yaml).
    provider_type: ClassVar[str]
    #: The module holding the plugin's ``register_providers`` hookimpl (its entry point).
    plugin_module: ClassVar[str]
    #: The SDK's top-level module: importing ``plugin_module`` must not import it.
    sdk_module: ClassVar[str]
    #: Environment variables the SDK reads the key from; the first is set in the tests.
    api_key_env: ClassVar[tuple[str, ...]]
    #: Whether the provider holds conversations server-side (``backend: native``).
    supports_native: ClassVar[bool] = False
    #: Built into langswarm-runtime: must also be listed in ``plugins.DEFAULT_PLUGINS``.
    builtin: ClassVar[bool] = False
    #: The emulator's path prefix for this provider (default: ``provider_type``).
    emulator_route: ClassVar[str | None] = None
    model: ClassVar[str] = "test-model"
    api_key: ClassVar[str] = "test-secret-key-0123456789abcdef"
    #: Per fault kind, the error type when it differs from ``DEFAULT_FAULT_ERRORS``.
    fault_errors: ClassVar[dict[str, type[ProviderError]]] = {}
    #: Faults a turn survives when ``max_retries`` allows another attempt.
    retried_faults: ClassVar[tuple[str, ...]] = ("429", "500", "503", "529", "drop")
    #: True: typed errors carry no SDK exception at all (``__context__`` is None);
    #: False: it is kept but suppressed (``raise ... from None``), so never printed.
    sdk_context_cleared: ClassVar[bool] = True
    #: True when the SDK sends a request without a key and the server's 401 is the error.
    missing_key_sends_request: ClassVar[bool] = False
    #: Text the missing-key error must contain (default: the first of ``api_key_env``).
    missing_key_hint: ClassVar[str | None] = None

    #: Known adapter bugs: test id (``test_name[params]``) -> reason. Each is run as a
    #: strict xfail, so it is reported, not hidden, and the fix is noticed.
    known_failures: ClassVar[dict[str, str]] = {}

    def wire_messages(self, request: Any) -> list[tuple[str, str]]:
        """The messages of one recorded turn request (``request.json`` is its body), as
        ``(role, text)`` with roles ``system``, ``user`` and ``assistant``, in order."""
        raise NotImplementedError("a ProviderConformance subclass implements wire_messages")

    # -- parametrisation ------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        cls = type(self)
        if "backend" in metafunc.fixturenames:
            backends = [HYBRID, NATIVE] if cls.supports_native else [HYBRID]
            metafunc.parametrize("backend", backends, ids=lambda b: b.value)
        if "fault" in metafunc.fixturenames:
            cases = [(k, s) for k in DEFAULT_FAULT_ERRORS for s in (False, True)
                     if s or k != "stream_break"]  # fmt: skip
            metafunc.parametrize(("fault", "streamed"), cases, ids=_case_id)
        if "retried" in metafunc.fixturenames:
            cases = [(k, False) for k in cls.retried_faults]
            cases += [(k, True) for k in cls.retried_faults if k == "429"]
            metafunc.parametrize(("retried", "streamed"), cases, ids=_case_id)

    # -- fixtures -------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _known_failure(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_failures.get(request.node.name)
        if reason:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))

    @pytest.fixture
    def provider_config(self, provider_emulator: Any) -> dict[str, Any]:
        """The provider entry: pointing at the emulator, with a fake key."""
        return {
            "type": self.provider_type,
            "model": self.model,
            "api_key": self.api_key,
            "base_url": provider_emulator.url(self.emulator_route or self.provider_type),
        }

    @pytest.fixture
    def secret(self, provider_config: dict[str, Any]) -> str:
        return str(provider_config["api_key"])

    @pytest.fixture
    def db_path(self, tmp_path: Path) -> Path:
        return tmp_path / "sessions.db"

    @pytest.fixture
    def manager(
        self, tmp_path: Path, db_path: Path, provider_config: dict[str, Any]
    ) -> Callable[..., Any]:
        """``async with manager(**entry_overrides) as m``: a SessionManager from a fresh
        swarm.yaml on the same SQLite file (a second one is a restart). An override of
        None removes the key."""
        written = iter(range(1_000_000))

        @asynccontextmanager
        async def open_manager(**overrides: Any) -> AsyncIterator[Any]:
            from langswarm_runtime.session.manager import SessionManager

            block = {"max_retries": 0, "timeout": 5, **provider_config, **overrides}
            doc = {
                "version": 1,
                "storage": {"type": "sqlite", "path": str(db_path)},
                "defaults": {"provider": ENTRY},
                "providers": {ENTRY: {k: v for k, v in block.items() if v is not None}},
            }
            path = tmp_path / f"swarm-{next(written)}.yaml"
            path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
            async with SessionManager.from_config(path) as mgr:
                yield mgr

        return open_manager

    @pytest.fixture
    def registered(self) -> tuple[Callable[..., Any], type[Any]]:
        """(factory, config model) the plugin module registers for ``provider_type``."""
        return _registration(self.plugin_module, self.provider_type)

    @pytest_asyncio.fixture
    async def make_provider(
        self,
        provider_config: dict[str, Any],
        registered: tuple[Callable[..., Any], type[Any]],
    ) -> AsyncIterator[Callable[..., Any]]:
        """``make_provider(**overrides)``: the adapter alone, built as the runtime builds
        it (the registered factory on the validated entry), closed at teardown."""
        factory, config_model = registered
        made: list[Any] = []

        def make(**overrides: Any) -> Any:
            block = {"max_retries": 0, "timeout": 5, **provider_config, **overrides}
            provider = factory(config_model.model_validate(block))
            made.append(provider)
            return provider

        yield make
        for provider in made:
            await provider.close()

    def _native_only(self) -> None:
        if not self.supports_native:
            pytest.skip(f"{self.provider_type} has no native mode")

    # -- turns and restarts -----------------------------------------------------------------
    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_conversation_survives_restart(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend, streamed: bool,
        db_path: Path, secret: str,
    ) -> None:  # fmt: skip
        async with manager() as mgr:
            session = await mgr.create_session(
                user_id="u1", provider=ENTRY, backend=backend, system_prompt="Be brief."
            )
            assert session.backend is backend
            assert await say(session, "one", streamed) == "echo: one [earlier messages: 0]"
            assert await say(session, "two", streamed) == "echo: two [earlier messages: 2]"
            sid = session.session_id
        async with manager() as mgr:  # the restart: a new manager on the same file
            assert await mgr.get_session(sid, user_id="someone-else") is None
            again = await mgr.get_session(sid, user_id="u1")
            assert again is not None and again.backend is backend
            provider_emulator.clear()
            assert await say(again, "three", streamed) == "echo: three [earlier messages: 4]"
            history = await again.get_history()
            usage = again.usage
        assert [(m.role, m.content) for m in history] == [
            ("user", "one"), ("assistant", "echo: one [earlier messages: 0]"),
            ("user", "two"), ("assistant", "echo: two [earlier messages: 2]"),
            ("user", "three"), ("assistant", "echo: three [earlier messages: 4]"),
        ]  # fmt: skip
        seqs = [m.seq for m in history]
        assert seqs == sorted(seqs) and len(set(seqs)) == 6
        replies = [m for m in history if m.role == "assistant"]
        for reply in replies:  # usage reaches storage, plain and streamed alike
            assert reply.usage is not None and reply.usage.input_tokens > 0
            assert reply.usage.output_tokens == _words(reply.content)
        assert usage.output_tokens == sum(_words(m.content) for m in replies)
        [turn] = provider_emulator.requests  # one request: no re-seeding, no retry
        sent = self.wire_messages(turn)
        if backend is NATIVE:  # the conversation id came back from storage: only the new one
            assert [m for m in sent if m[0] != "system"] == [("user", "three")]
        else:
            assert sent == [("system", "Be brief."), *[(m.role, m.content) for m in history[:5]]]
        self._assert_secret_kept(provider_emulator, db_path, secret)

    async def test_backend_selection(self, manager: Any) -> None:
        async with manager() as mgr:
            auto = await mgr.create_session(user_id="u", backend=SessionBackend.AUTO)
            assert auto.backend is (NATIVE if self.supports_native else HYBRID)
            if self.supports_native:
                native = await mgr.create_session(user_id="u", backend=NATIVE)
                assert native.backend is NATIVE
                return
            with pytest.raises(ConfigError, match="no native mode"):
                await mgr.create_session(user_id="u", backend=NATIVE)
            assert [s.backend for s in await mgr.list_sessions(user_id="u")] == [HYBRID]

    @pytest.mark.parametrize("how", ["forget", "not_found"])
    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_lost_remote_conversation_is_reseeded(
        self, manager: Any, provider_emulator: Any, how: str, streamed: bool
    ) -> None:
        self._native_only()
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=NATIVE)
            await session.send_message("one")
            await session.send_message("two")
            sid = session.session_id
        if how == "forget":
            provider_emulator.forget_conversations()  # lost while we were down
        else:
            provider_emulator.inject("not_found")
        async with manager() as mgr:
            again = await mgr.get_session(sid, user_id="u")
            assert again is not None
            # no error reaches the caller: a new conversation, seeded from the mirror
            assert await say(again, "three", streamed) == "echo: three [earlier messages: 4]"
            everything = await again.get_history(include_failed=True)
            assert [m.status for m in everything] == [MessageStatus.COMMITTED] * 6
            reply = await again.send_message("four")  # the new conversation was recorded
            assert reply.content == "echo: four [earlier messages: 6]"
        assert [m for m in self.wire_messages(provider_emulator.requests[-1])
                if m[0] != "system"] == [("user", "four")]  # fmt: skip

    async def test_conversation_lost_twice_fails_the_turn(
        self, manager: Any, provider_emulator: Any
    ) -> None:
        self._native_only()
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=NATIVE)
            await session.send_message("kept")
            provider_emulator.inject("not_found", count=2)  # gone, and the re-seed refused
            with pytest.raises(ProviderNotFound):
                await session.send_message("lost")
            await self._assert_clean_after_failure(session, provider_emulator, NATIVE)

    # -- faults -----------------------------------------------------------------------------
    async def test_fault_fails_the_turn(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend, fault: str,
        streamed: bool, secret: str,
    ) -> None:  # fmt: skip
        expected = {**DEFAULT_FAULT_ERRORS, **self.fault_errors}[fault]
        retries = 2 if fault == "stream_break" else 0  # a stream that began is never replayed
        timeout = _TIMEOUT if fault == "slow" else 5
        async with manager(max_retries=retries, timeout=timeout) as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            await session.send_message("kept")
            provider_emulator.clear()
            provider_emulator.inject(fault, retry_after=17, delay=_SLOW)
            received: list[str] = []
            with pytest.raises(ProviderError) as info:
                if streamed:
                    async for chunk in session.stream_message("lost"):
                        received.append(chunk)
                else:
                    await session.send_message("lost")
            err = info.value
            assert type(err) is expected, f"{fault}: {type(err).__name__}: {err}"
            assert err.status_code == _STATUS.get(fault, err.status_code)
            if isinstance(err, ProviderRateLimited):
                assert err.retry_after == 17
            if fault == "stream_break":
                assert received, "some deltas arrived before the break"
            assert len(provider_emulator.requests) == 1, "no retry with max_retries=0"
            assert secret not in "".join(traceback.format_exception(err))
            await self._assert_clean_after_failure(session, provider_emulator, backend)

    async def test_transient_fault_is_retried(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend, retried: str,
        streamed: bool,
    ) -> None:  # fmt: skip
        async with manager(max_retries=2) as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            await session.send_message("kept")
            provider_emulator.clear()
            wait = _RETRY_AFTER if retried == "429" else 0
            provider_emulator.inject(retried, retry_after=wait)
            started = time.monotonic()
            assert await say(session, "again", streamed) == "echo: again [earlier messages: 2]"
            assert time.monotonic() - started >= wait * 0.9, "Retry-After was honoured"
            assert [r.fault for r in provider_emulator.requests] == [retried, None]
            history = await session.get_history(include_failed=True)
        assert [m.content for m in history if m.role == "user"] == ["kept", "again"]
        assert all(m.status is MessageStatus.COMMITTED for m in history)

    @pytest.mark.parametrize(
        ("kind", "streamed"),
        [("429", False), ("503", False), ("malformed", False), ("429", True),
         ("malformed", True), ("stream_break", True)],
        ids=_case_id,
    )  # fmt: skip
    async def test_typed_error_hides_the_sdk_exception(
        self, make_provider: Any, provider_emulator: Any, kind: str, streamed: bool
    ) -> None:
        provider_emulator.inject(kind, retry_after=3)
        with pytest.raises(ProviderError) as info:
            await provider_turn(make_provider(), make_request(), streamed)
        err = info.value
        assert type(err) is {**DEFAULT_FAULT_ERRORS, **self.fault_errors}[kind]
        assert err.__cause__ is None
        if self.sdk_context_cleared:
            assert err.__context__ is None
        else:
            assert err.__suppress_context__
        assert err.provider, "the error names the provider"

    async def test_stream_contract(
        self, make_provider: Any, provider_emulator: Any, backend: SessionBackend
    ) -> None:
        request = make_request(backend=backend, history=HISTORY, system_prompt="Be brief.")
        deltas, final = await collect_stream(make_provider(), request)
        assert len(deltas) > 1, "the reply arrives in pieces"
        assert final.content == "echo: hello there [earlier messages: 2]"
        assert final.usage.output_tokens == _words(final.content)
        assert final.usage.input_tokens > 0
        assert (final.state is not None) is (backend is NATIVE)

    # -- secrets ----------------------------------------------------------------------------
    async def test_api_key_never_in_errors_or_storage(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend, db_path: Path,
        secret: str, monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        from langswarm_runtime.testing.emulator import _wire

        route = self.emulator_route or self.provider_type
        shape = _wire._ERROR_SHAPES.get(route, _wire._default_error)
        # A server that echoes the key back, as some gateways do in their error text.
        monkeypatch.setitem(_wire._ERROR_SHAPES, route, lambda status, message, code: shape(
            status, f"{message}: invalid key {secret}", code))  # fmt: skip
        kinds = ["500", "429"] + (["not_found"] if backend is HYBRID else [])
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            await session.send_message("kept")
            for kind in kinds:
                provider_emulator.inject(kind)
                with pytest.raises(ProviderError) as info:
                    await session.send_message(f"lost {kind}")
                shown = "".join(traceback.format_exception(info.value))
                assert secret not in shown and secret not in repr(info.value.args)
                assert "***" in str(info.value), "the server's text is kept, key masked"
        self._assert_secret_kept(provider_emulator, db_path, secret)

    async def test_missing_key_is_auth_error(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        for var in self.api_key_env:
            monkeypatch.delenv(var, raising=False)
        async with manager(api_key=None) as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            with pytest.raises(ProviderAuthError) as info:
                await session.send_message("hi")
            everything = await session.get_history(include_failed=True)
        assert [m.status for m in everything] == [MessageStatus.FAILED]
        if self.missing_key_sends_request:
            assert info.value.status_code == 401
            assert all("authorization" not in r.headers for r in provider_emulator.requests)
        else:
            assert provider_emulator.requests == [], "no request without a key"
            assert (self.missing_key_hint or self.api_key_env[0]) in str(info.value)

    @pytest.mark.parametrize("entry_key", [None, ""], ids=["absent", "empty"])
    async def test_key_from_environment(
        self, manager: Any, provider_emulator: Any, db_path: Path, entry_key: str | None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        env_key = "env-secret-key-9876543210fedcba"
        for var in self.api_key_env:
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv(self.api_key_env[0], env_key)
        async with manager(api_key=entry_key) as mgr:  # "" is what ${VAR:-} gives
            session = await mgr.create_session(user_id="u")
            assert await say(session, "hi", False) == "echo: hi [earlier messages: 0]"
        sent = provider_emulator.requests[-1]
        assert "<redacted>" in sent.headers.values() or "<redacted>" in sent.query.values()
        self._assert_secret_kept(provider_emulator, db_path, env_key)

    # -- packaging --------------------------------------------------------------------------
    def test_sdk_not_imported_by_the_plugin(self) -> None:
        code = (
            "import sys\n"
            "from langswarm_runtime.testing.provider_suite import _registration\n"
            "from langswarm_runtime.plugins import PluginManager\n"
            f"factory, model = _registration({self.plugin_module!r}, {self.provider_type!r})\n"
            "factory(model(model='x'))\n"
            "PluginManager()\n"
            f"loaded = [m for m in sys.modules if m == {self.sdk_module!r}"
            f" or m.startswith({self.sdk_module + '.'!r})]\n"
            "assert not loaded, f'SDK imported: {loaded[:3]}'\n"
            "print('ok')\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"

    def test_registered_as_plugin(self, registered: tuple[Callable[..., Any], Any]) -> None:
        from importlib.metadata import entry_points

        from langswarm_runtime.plugins import PluginManager
        from langswarm_runtime.providers.base import ProviderConfig

        names = [ep.name for ep in entry_points(group="langswarm_runtime")
                 if ep.value == self.plugin_module]  # fmt: skip
        assert names, f"no entry point in group langswarm_runtime for {self.plugin_module}"
        plugins = PluginManager(environ={"LANGSWARM_LOAD_PLUGINS": names[0]})
        item = plugins.providers.get(self.provider_type)
        assert item is not None and item.plugin == names[0]
        factory, config_model = registered
        assert (item.factory, item.config_model) == (factory, config_model)
        assert issubclass(config_model, ProviderConfig)
        assert getattr(factory, "supports_native", False) is self.supports_native

    def test_listed_in_default_plugins(self) -> None:
        if not self.builtin:
            pytest.skip("only built-in providers are listed in DEFAULT_PLUGINS")
        from langswarm_runtime.plugins import DEFAULT_PLUGINS

        assert self.plugin_module in DEFAULT_PLUGINS

    # -- shared checks ----------------------------------------------------------------------
    async def _assert_clean_after_failure(
        self, session: Any, provider_emulator: Any, backend: SessionBackend
    ) -> None:
        """After one good turn ("kept") and one failed one ("lost"): the failure is
        recorded, the committed history is untouched, and the next turn works and never
        sends the failed message."""
        everything = await session.get_history(include_failed=True)
        failed = [m for m in everything if m.status is MessageStatus.FAILED]
        assert [(m.role, m.content) for m in failed] == [("user", "lost")]
        reply = await session.send_message("after")
        assert reply.content == "echo: after [earlier messages: 2]"  # failed turns not sent
        history = await session.get_history()
        assert [(m.role, m.content) for m in history] == [
            ("user", "kept"), ("assistant", "echo: kept [earlier messages: 0]"),
            ("user", "after"), ("assistant", "echo: after [earlier messages: 2]"),
        ]  # fmt: skip
        sent = [text for role, text in self.wire_messages(provider_emulator.requests[-1])]
        assert "lost" not in sent

    def _assert_secret_kept(self, provider_emulator: Any, db_path: Path, secret: str) -> None:
        """The key is in no recorded request (beyond redacted credential headers) and in
        no byte of the SQLite files."""
        for rec in provider_emulator.requests:
            assert secret not in repr((rec.path, rec.query, rec.headers, rec.json))
        assert db_path.exists()
        assert not sqlite_files_contain(db_path, secret), "the API key reached storage"


def _registration(module_name: str, provider_type: str) -> tuple[Callable[..., Any], Any]:
    """Run the module's ``register_providers`` hook; return what it registered for
    ``provider_type``: (factory, config model)."""
    import importlib

    module = importlib.import_module(module_name)
    hook = getattr(module, "register_providers", None)
    assert hook is not None, f"{module_name} has no register_providers hookimpl"
    found: dict[str, tuple[Callable[..., Any], Any]] = {}
    hook(register=lambda name, factory, config_model=None: found.__setitem__(
        name, (factory, config_model)))  # fmt: skip
    assert provider_type in found, f"{module_name} registers {sorted(found)}, not {provider_type!r}"
    return found[provider_type]
