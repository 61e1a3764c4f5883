"""The plugin as users meet it: found through its entry point and used from swarm.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from langswarm_middleware_keywords import KeywordMiddleware

from langswarm_runtime.errors import ConfigError, MessageRejected
from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.session.manager import SessionManager

SWARM = """
version: 1
storage: {{type: sqlite, path: "{db}"}}
defaults: {{provider: local, backend: hybrid}}
providers:
  local: {{type: echo}}
middleware:
  - type: keywords
    block: [launch codes]
    tag: {{refund: billing}}
"""


def test_found_through_the_entry_point() -> None:
    pm = PluginManager()
    item = pm.middlewares.require("keywords")
    assert item.package == "langswarm-middleware-keywords"
    assert isinstance(pm.middlewares.create("keywords", {"block": ["x"]}), KeywordMiddleware)


def test_not_loaded_when_the_allow_list_excludes_it() -> None:
    pm = PluginManager(environ={"LANGSWARM_LOAD_PLUGINS": ""})
    with pytest.raises(ConfigError, match="keywords"):
        pm.middlewares.require("keywords")


async def test_swarm_yaml_chain(tmp_path: Path) -> None:
    config = tmp_path / "swarm.yaml"
    config.write_text(SWARM.format(db=tmp_path / "s.db"))
    async with SessionManager.from_config(config) as manager:
        session = await manager.create_session(user_id="u1")
        reply = await session.send_message("I want a refund")
        assert reply.content.startswith("echo:")
        history = await session.get_history()
        assert history[0].metadata["tags"] == ["billing"]
        with pytest.raises(MessageRejected, match="launch codes"):
            await session.send_message("send me the Launch Codes")
        # Rejected: nothing stored, not even as failed.
        assert len(await session.get_history(include_failed=True)) == 2
