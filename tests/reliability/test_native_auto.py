"""Native mode only where it is real.

``backend: auto`` picks native only where the endpoint is known to keep conversations:
the provider's own API (no ``base_url``, or its official URL). A custom ``base_url``
(a proxy, a gateway, an OpenAI-compatible server) gets hybrid unless native is asked for
explicitly, because such servers may accept a native request and silently keep nothing.
``api: chat_completions`` has no conversations at all: auto is hybrid, native a
``ConfigError`` before anything is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import SessionBackend, SessionManager
from langswarm_runtime.errors import ConfigError
from langswarm_runtime.testing.emulator import ProviderEmulator, RecordedRequest
from langswarm_runtime.testing.provider_helpers import content_text

NATIVE, HYBRID, AUTO = SessionBackend.NATIVE, SessionBackend.HYBRID, SessionBackend.AUTO
OFFICIAL = {
    "openai": "https://api.openai.com/v1",
    "mistral": "https://api.mistral.ai",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
CUSTOM = "http://127.0.0.1:4000"  # what a LiteLLM proxy or a local server looks like
URLS = {"none": None, "official": "official", "custom": CUSTOM}
#: requested backend -> resolved, per kind of endpoint
EXPECTED = {
    "auto": {"none": NATIVE, "official": NATIVE, "custom": HYBRID},
    "native": {"none": NATIVE, "official": NATIVE, "custom": NATIVE},
    "hybrid": {"none": HYBRID, "official": HYBRID, "custom": HYBRID},
}


def manager_for(tmp_path: Path, entry: dict[str, Any]) -> SessionManager:
    doc = {
        "version": 1,
        "storage": {"type": "sqlite", "path": str(tmp_path / "s.db")},
        "defaults": {"provider": "subject"},
        "providers": {"subject": {"model": "test-model", "api_key": "test-key-0123", **entry}},
    }
    path = tmp_path / "swarm.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    return SessionManager.from_config(path)


@pytest.mark.parametrize("requested", sorted(EXPECTED))
@pytest.mark.parametrize("where", sorted(URLS))
@pytest.mark.parametrize("provider", sorted(OFFICIAL))
async def test_backend_resolution(
    provider: str, where: str, requested: str, tmp_path: Path
) -> None:
    entry: dict[str, Any] = {"type": provider}
    url = OFFICIAL[provider] if where == "official" else URLS[where]
    if url is not None:
        entry["base_url"] = url
    async with manager_for(tmp_path, entry) as manager:
        session = await manager.create_session(user_id="u", backend=requested)
        assert session.backend is EXPECTED[requested][where]
        again = await manager.get_session(session.session_id)
        assert again is not None and again.backend is session.backend  # as it was stored


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com",  # no version segment
        "https://API.OpenAI.com/v1/",  # host names are case-insensitive; trailing slash
        "https://api.openai.com:443/v1",
    ],
)
async def test_official_url_spellings_are_native(url: str, tmp_path: Path) -> None:
    async with manager_for(tmp_path, {"type": "openai", "base_url": url}) as manager:
        assert (await manager.create_session(user_id="u")).backend is NATIVE


@pytest.mark.parametrize(
    "url",
    [
        "http://api.openai.com/v1",  # not https: something in between could answer
        "https://api.openai.com:8443/v1",
        "https://api.openai.com.example.net/v1",
        "https://openai.example.net/api.openai.com/v1",
        "https://api.anthropic.com/v1",  # another provider's API
        "http://localhost:11434",
    ],
)
async def test_lookalike_urls_are_hybrid(url: str, tmp_path: Path) -> None:
    async with manager_for(tmp_path, {"type": "openai", "base_url": url}) as manager:
        assert (await manager.create_session(user_id="u")).backend is HYBRID


@pytest.mark.parametrize("where", sorted(URLS))
async def test_chat_completions_never_native(where: str, tmp_path: Path) -> None:
    entry: dict[str, Any] = {"type": "openai", "api": "chat_completions"}
    url = OFFICIAL["openai"] if where == "official" else URLS[where]
    if url is not None:
        entry["base_url"] = url
    async with manager_for(tmp_path, entry) as manager:
        assert (await manager.create_session(user_id="u", backend=AUTO)).backend is HYBRID
        assert (await manager.create_session(user_id="u", backend=HYBRID)).backend is HYBRID
        before = await manager.list_sessions(user_id="u")
        with pytest.raises(ConfigError, match="native mode needs the Conversations API") as info:
            await manager.create_session(user_id="u", backend=NATIVE)
        assert "\n" not in str(info.value) and "subject" in str(info.value)
        assert len(await manager.list_sessions(user_id="u")) == len(before)  # nothing stored


async def test_config_default_native_with_chat_completions_is_refused(tmp_path: Path) -> None:
    """``defaults.backend: native`` reaches the same check (and ``config check`` with it)."""
    doc = {
        "version": 1,
        "storage": {"type": "sqlite", "path": str(tmp_path / "s.db")},
        "defaults": {"provider": "local", "backend": "native"},
        "providers": {
            "local": {"type": "openai", "api": "chat_completions", "model": "m",
                      "api_key": "k", "base_url": CUSTOM},
        },
    }  # fmt: skip
    path = tmp_path / "swarm.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")
    async with SessionManager.from_config(path) as manager:
        with pytest.raises(ConfigError, match="Conversations API"):
            manager.runtime.validate()
        with pytest.raises(ConfigError, match="Conversations API"):
            await manager.create_session(user_id="u")
        assert await manager.list_sessions() == []


async def test_providers_without_native_mode_stay_hybrid(tmp_path: Path) -> None:
    async with manager_for(tmp_path, {"type": "cohere"}) as manager:
        assert (await manager.create_session(user_id="u", backend=AUTO)).backend is HYBRID
        with pytest.raises(ConfigError, match="no native mode"):
            await manager.create_session(user_id="u", backend=NATIVE)


# ---------------------------------------------------------------------------- a real turn


def sent(provider: str, request: RecordedRequest) -> list[tuple[str, str]]:
    """The (role, text) turns a recorded hybrid request carried, system text left out."""
    body = request.json
    if provider == "openai":
        items = body["input"]
    elif provider in ("mistral", "anthropic"):
        items = body["messages"]
    else:
        items = [{"role": "assistant" if c["role"] == "model" else c["role"],
                  "content": c["parts"]} for c in body["contents"]]  # fmt: skip
    return [
        (i["role"], content_text(i["content"]))
        for i in items
        if i["role"] not in ("system", "developer")
    ]


@pytest.mark.parametrize("provider", sorted(OFFICIAL))
async def test_proxy_base_url_with_auto_sends_the_whole_context(
    provider: str, tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    # The emulator stands for a proxy: a custom base_url with the default backend (auto).
    entry = {"type": provider, "base_url": provider_emulator.url(provider), "max_retries": 0}
    async with manager_for(tmp_path, entry) as manager:
        session = await manager.create_session(user_id="u", system_prompt="Be brief.")
        assert session.backend is HYBRID
        await session.send_message("one")
        await session.send_message("two")
        # Had the proxy been trusted with the conversation and dropped it, the model
        # would now see no earlier messages; hybrid sends them every turn.
        provider_emulator.forget_conversations()
        reply = await session.send_message("three")
        assert reply.content == "echo: three [earlier messages: 4]"
        assert session.record.provider_state == {}
    paths = [r.path for r in provider_emulator.requests]
    assert not [p for p in paths if "conversations" in p or "interactions" in p], paths
    assert all("thread" not in (r.json or {}) for r in provider_emulator.requests)
    assert sent(provider, provider_emulator.requests[-1]) == [
        ("user", "one"), ("assistant", "echo: one [earlier messages: 0]"),
        ("user", "two"), ("assistant", "echo: two [earlier messages: 2]"),
        ("user", "three"),
    ]  # fmt: skip
