"""A thin synchronous facade for scripts and notebooks.

    from langswarm_runtime.sync import SyncSessionManager

    with SyncSessionManager.from_config("swarm.yaml") as manager:
        session = manager.create_session(user_id="u1")
        print(session.send_message("hi").content)

Each manager runs its own event loop in a background thread, so it also works inside
Jupyter, where a loop is already running in the main thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from typing import Any, Self, TypeVar

from langswarm_runtime.session.manager import SessionManager
from langswarm_runtime.session.models import Message, SessionRecord
from langswarm_runtime.session.parts import ToolCall, ToolResult
from langswarm_runtime.session.session import Session
from langswarm_runtime.session.turns import TurnEvent

__all__ = ["SyncSession", "SyncSessionManager"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="langswarm-sync", daemon=True
        )
        self._thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_await(awaitable), self.loop).result()

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()


class SyncSession:
    """Blocking wrapper of ``Session``; attributes are forwarded."""

    def __init__(self, session: Session, runner: _LoopThread) -> None:
        self._session = session
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def send_message(self, content: Any, **options: Any) -> Message:
        """``Session.send_message``: text, a part or a list; ``tools=``,
        ``response_format=``."""
        return self._runner.run(self._session.send_message(content, **options))

    def stream_message(self, content: Any, **options: Any) -> Iterator[str]:
        return self._iterate(self._session.stream_message(content, **options))

    def stream_events(self, content: Any, **options: Any) -> Iterator[TurnEvent]:
        return self._iterate(self._session.stream_events(content, **options))

    def send_tool_results(self, results: Sequence[ToolResult]) -> Message:
        return self._runner.run(self._session.send_tool_results(results))

    def open_tool_calls(self) -> list[ToolCall]:
        return self._runner.run(self._session.open_tool_calls())

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._runner.run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._runner.run(agen.aclose())  # type: ignore[attr-defined]

    def get_history(self, include_failed: bool = False) -> list[Message]:
        return self._runner.run(self._session.get_history(include_failed=include_failed))

    def add_middleware(self, middleware: object) -> None:
        self._session.add_middleware(middleware)

    def switch_provider(self, provider: str, model: str | None = None, backend: Any = None) -> None:
        self._runner.run(self._session.switch_provider(provider, model=model, backend=backend))


class SyncSessionManager:
    """Blocking wrapper of ``SessionManager`` with the same methods."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runner = _LoopThread()
        try:
            self._manager: SessionManager = self._runner.run(_build(*args, **kwargs))
        except BaseException:
            self._runner.stop()
            raise

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> SyncSessionManager:
        self = cls.__new__(cls)
        self._runner = _LoopThread()
        try:
            self._manager = self._runner.run(_from_config(path))
        except BaseException:
            self._runner.stop()
            raise
        return self

    @property
    def manager(self) -> SessionManager:
        return self._manager

    def create_session(self, **kwargs: Any) -> SyncSession:
        return SyncSession(self._runner.run(self._manager.create_session(**kwargs)), self._runner)

    def get_session(
        self, session_id: str, user_id: str | None = None, *, tools: Any = None
    ) -> SyncSession | None:
        session = self._runner.run(
            self._manager.get_session(session_id, user_id=user_id, tools=tools)
        )
        return None if session is None else SyncSession(session, self._runner)

    def list_sessions(self, user_id: str | None = None, **kwargs: Any) -> list[SessionRecord]:
        return self._runner.run(self._manager.list_sessions(user_id, **kwargs))

    def delete_session(self, session_id: str, user_id: str | None = None) -> None:
        self._runner.run(self._manager.delete_session(session_id, user_id=user_id))

    def close(self) -> None:
        try:
            self._runner.run(self._manager.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _build(*args: Any, **kwargs: Any) -> SessionManager:
    return SessionManager(*args, **kwargs)


async def _from_config(path: str | os.PathLike[str] | None) -> SessionManager:
    return SessionManager.from_config(path)
