"""Fault and secret checks of the provider conformance suite: every emulator fault kind
through a real session, retries, typed errors, the streaming contract, the API key."""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime.errors import ProviderAuthError, ProviderError, ProviderRateLimited
from langswarm_runtime.session.models import MessageStatus, SessionBackend
from langswarm_runtime.testing._provider_base import (
    _RETRY_AFTER,
    _SLOW,
    _STATUS,
    _TIMEOUT,
    ANSWER_FAULTS,
    DEFAULT_FAULT_ERRORS,
    HYBRID,
    NATIVE,
    ProviderSuiteBase,
    _case_id,
    _words,
)
from langswarm_runtime.testing.provider_helpers import (
    HISTORY,
    collect_stream,
    make_request,
    provider_turn,
    say,
)


class FaultChecks(ProviderSuiteBase):
    """Faults, retries and secrets; mixed into ``ProviderConformance``."""

    # -- faults -----------------------------------------------------------------------------
    async def test_fault_fails_the_turn(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend, fault: str,
        streamed: bool, secret: str,
    ) -> None:  # fmt: skip
        expected = {**DEFAULT_FAULT_ERRORS, **self.fault_errors}[fault]
        # An answer the server sent (a stream that began, a body it acted on) is never
        # replayed, whatever max_retries allows.
        retries = 2 if fault in ANSWER_FAULTS else 0
        timeout = _TIMEOUT if fault == "slow" else 5
        async with manager(max_retries=retries, timeout=timeout) as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            await session.send_message("kept")
            before = await session.get_history()
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
            if fault in _STATUS:  # the server's own words, not a raw JSON body
                said = "Rate limit reached" if fault == "429" else f"Server error {fault}"
                assert said in str(err) and "{" not in str(err), str(err)
            if fault == "stream_break":
                assert received, "some deltas arrived before the break"
            assert len(provider_emulator.requests) == 1, "no retry with max_retries=0"
            assert await session.get_history() == before, "nothing of the turn committed"
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
            # twice where it matters (Retry-After each time; max_retries counts them all),
            # once elsewhere: the SDKs' own backoff without Retry-After is ~1 s a retry
            count = 2 if retried in ("429", "503") else 1
            provider_emulator.inject(retried, retry_after=wait, count=count)
            started = time.monotonic()
            assert await say(session, "again", streamed) == "echo: again [earlier messages: 2]"
            assert time.monotonic() - started >= count * wait * 0.9, "Retry-After honoured"
            faults = [r.fault for r in provider_emulator.requests]
            if backend is NATIVE and retried != "429":
                # The server may have acted on the failed request, so the retry may go to
                # a fresh conversation seeded from the mirror: more than one request.
                assert faults[:count] == [retried] * count and set(faults[count:]) == {None}
            else:
                assert faults == [retried] * count + [None]
            history = await session.get_history(include_failed=True)
        assert [m.content for m in history if m.role == "user"] == ["kept", "again"]
        assert all(m.status is MessageStatus.COMMITTED for m in history)

    @pytest.mark.parametrize(
        ("kind", "streamed"),
        [("429", False), ("503", False), ("malformed", False), ("429", True),
         ("malformed", True), ("stream_break", True), ("bad_event", True),
         ("out_of_order", True), ("truncated", True)],
        ids=_case_id,
    )  # fmt: skip
    async def test_typed_error_hides_the_sdk_exception(
        self, make_provider: Any, provider_emulator: Any, backend: SessionBackend, kind: str,
        streamed: bool,
    ) -> None:  # fmt: skip
        # The adapter alone: a session re-raises with ``from``, which would hide this.
        provider = make_provider()
        request = make_request(backend=backend)
        if backend is NATIVE and kind in ANSWER_FAULTS:
            # A fault that spoils an answer must hit the turn's own, not the seeding call
            # that opens a new remote conversation: continue an existing one.
            opened = await provider.send(make_request("first", backend=backend))
            request = make_request(backend=backend, state=opened.state)
        provider_emulator.inject(kind, retry_after=3)
        with pytest.raises(ProviderError) as info:
            await provider_turn(provider, request, streamed)
        err = info.value
        assert type(err) is {**DEFAULT_FAULT_ERRORS, **self.fault_errors}[kind]
        assert err.__cause__ is None
        if self.sdk_context_cleared:
            assert err.__context__ is None
        else:  # chained, if at all, with ``from None``: never printed
            assert err.__context__ is None or err.__suppress_context__
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
