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
dropping a test; a known bug goes in ``known_failures`` and runs as a strict xfail. Tests
that need a native mode skip on providers without one. The declarations and fixtures live
in :class:`ProviderSuiteBase`, the fault and secret checks in ``_provider_faults``.

Every emulator fault is injected into every turn shape, streams included: a stream with
an event that is not JSON (``bad_event``), its terminal event out of place
(``out_of_order``) or no terminal event (``truncated``) must fail the turn with
``ProviderBadResponse`` and commit nothing. So an adapter checks what its SDK hands it
(some SDKs skip or invent an event they cannot parse) and the order of its wire's events;
the built-in adapters do it with ``langswarm_runtime.providers._common.StreamOrder``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime.errors import ConfigError, ProviderNotFound
from langswarm_runtime.session.models import MessageStatus, SessionBackend
from langswarm_runtime.testing._provider_base import (
    DEFAULT_FAULT_ERRORS,
    ENTRY,
    HYBRID,
    NATIVE,
    ProviderSuiteBase,
    _words,
)
from langswarm_runtime.testing._provider_faults import FaultChecks
from langswarm_runtime.testing._provider_rich import RichTurnChecks
from langswarm_runtime.testing.provider_helpers import say

__all__ = ["DEFAULT_FAULT_ERRORS", "ProviderConformance", "ProviderSuiteBase"]


class ProviderConformance(FaultChecks, RichTurnChecks):
    """Base class of the provider conformance tests; see the module docstring."""

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
            # The emulator is a custom base_url, not the provider's own API: auto never
            # trusts one to keep conversations, so native must be asked for explicitly.
            assert auto.backend is HYBRID
            if self.supports_native:
                native = await mgr.create_session(user_id="u", backend=NATIVE)
                assert native.backend is NATIVE
                return
            with pytest.raises(ConfigError, match="no native mode") as info:
                await mgr.create_session(user_id="u", backend=NATIVE)
            native = [t for t in mgr.runtime.plugins.providers.names()
                      if getattr(mgr.runtime.plugins.providers.get(t).factory,
                                 "supports_native", False)]  # fmt: skip
            assert all(name in str(info.value) for name in native), "names the ones that have it"
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

    # -- packaging --------------------------------------------------------------------------
    def test_sdk_not_imported_by_the_plugin(self) -> None:
        code = (
            "import sys\n"
            "from langswarm_runtime.testing._provider_base import _registration\n"
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
