"""Declarations, fixtures and shared checks of the provider conformance suite (see
:mod:`langswarm_runtime.testing.provider_suite`, which is the public face)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from langswarm_runtime.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.session.models import MessageStatus, SessionBackend
from langswarm_runtime.testing.provider_helpers import sqlite_files_contain

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
    # A stream whose events cannot be parsed or come out of order is a bad answer, never a
    # shorter reply: the turn fails like any other provider error.
    "bad_event": ProviderBadResponse,
    "out_of_order": ProviderBadResponse,
    "truncated": ProviderBadResponse,
}
#: Faults that spoil an answer after the server acted on the request (see the emulator).
ANSWER_FAULTS = frozenset({"stream_break", "bad_event", "out_of_order", "truncated"})
#: Of those, the ones that only make sense for a streamed turn.
STREAM_ONLY_FAULTS = frozenset({"stream_break", "out_of_order", "truncated"})
_STATUS = {"429": 429, "500": 500, "503": 503, "529": 529}
_TIMEOUT, _SLOW = 1.0, 2.0  # the small timeout and the emulator's delay for "slow"
_RETRY_AFTER = 0.4  # what the emulator asks for in retried 429s; the wait must honour it


def _words(text: str) -> int:
    return len(text.split())


def _case_id(value: Any) -> str:
    if isinstance(value, bool):
        return "streamed" if value else "plain"
    return str(value)


class ProviderSuiteBase:
    """What a provider declares, the fixtures every check uses, and shared assertions."""

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
    retried_faults: ClassVar[tuple[str, ...]] = ("429", "503", "529", "drop")
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
    #: Why the rich-turn checks (tools, media, structured output) cannot pass yet: an
    #: adapter that does not translate them declares it, and they run as strict xfails.
    rich_turns_pending: ClassVar[str | None] = None

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
                     if s or k not in STREAM_ONLY_FAULTS]  # fmt: skip
            metafunc.parametrize(("fault", "streamed"), cases, ids=_case_id)
        if "retried" in metafunc.fixturenames:
            cases = [(k, False) for k in cls.retried_faults]
            cases += [(k, True) for k in cls.retried_faults if k == "429"]
            metafunc.parametrize(("retried", "streamed"), cases, ids=_case_id)

    # -- fixtures -------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _known_failure(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_failures.get(request.node.name)
        if reason is None and self.rich_turns_pending:
            from langswarm_runtime.testing._provider_rich import RichTurnChecks

            if getattr(RichTurnChecks, request.node.originalname, None) is not None:
                reason = self.rich_turns_pending
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
            block = {k: v for k, v in block.items() if v is not None}  # None: the default
            provider = factory(config_model.model_validate(block))
            made.append(provider)
            return provider

        yield make
        for provider in made:
            await provider.close()

    def _native_only(self) -> None:
        if not self.supports_native:
            pytest.skip(f"{self.provider_type} has no native mode")

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
