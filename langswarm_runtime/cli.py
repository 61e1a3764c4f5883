"""``langswarm-run``: chat, manage sessions, plugins and config from the command line.

Exit codes: 0 ok, 2 usage or config error, 3 provider failure, 4 session not found or not
yours, 5 storage failure, 6 message rejected by middleware, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langswarm_runtime.errors import InvalidMessage, LangSwarmError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

BUILTIN_COMMANDS = ("chat", "sessions", "plugins", "config", "emulator")
#: langswarm_runtime.testing.emulator.DEFAULT_PORT (a test keeps them equal; importing it
#: here would load the emulator on every start-up).
EMULATOR_PORT = 8765


class UnknownCommand(InvalidMessage):
    """A chat line naming no known ``/command``: an error, never sent as a message."""


class UsageError(InvalidMessage):
    """A command line that cannot be used (an ``--attach`` file that cannot be read)."""

    exit_code = EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _common(defaults: bool) -> _Parser:
    """Options accepted before and after the subcommand."""
    p = _Parser(add_help=False)
    sup = None if defaults else argparse.SUPPRESS
    p.add_argument(
        "--config",
        "-c",
        default=sup,
        help="swarm.yaml to use (default: $LANGSWARM_CONFIG, else ./swarm.yaml)",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="show tracebacks",
    )
    p.add_argument(
        "--user",
        "-u",
        default=sup,
        help="act as this user (default: defaults.user_id from the config); "
        "another user's session looks like a missing one",
    )
    return p


def _all_users(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--all-users",
        action="store_true",
        help="operator access: every user's sessions (instead of --user)",
    )


def _chat_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    sup = None if defaults else argparse.SUPPRESS
    p.add_argument("-m", "--message", default=sup, help="send one message and print the reply")
    p.add_argument(
        "--attach",
        action="append",
        metavar="FILE",
        default=[] if defaults else argparse.SUPPRESS,
        help="attach an image or file to the message (repeatable)",
    )
    p.add_argument("--session", "-s", default=sup, help="resume this session id")
    p.add_argument("--provider", "-p", default=sup, help="provider entry for a new session")
    p.add_argument("--model", default=sup, help="model for a new session")
    p.add_argument(
        "--backend", choices=["native", "hybrid", "auto"], default=sup, help="session backend"
    )
    p.add_argument("--system", default=sup, help="system prompt for a new session")
    p.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="print one JSON object per turn",
    )
    p.add_argument(
        "--no-stream",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="do not stream replies even on a terminal",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {value}")
    return value


def build_parser(plugin_commands: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="langswarm-run",
        description="Persistent, provider-agnostic LLM chat sessions.",
        parents=[_common(True)],
        epilog="Sessions belong to a user: every command acts as --user, else the config's "
        "defaults.user_id, and another user's session looks like a missing one (exit 4); "
        "'sessions list|show|export|delete --all-users' is operator access to every user's. "
        "Exit codes: 0 ok, 2 usage/config error, 3 provider failure, "
        "4 session not found, 5 storage failure, 6 message rejected, 130 interrupted.",
    )
    _chat_options(parser, True)
    common = _common(False)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    chat = sub.add_parser("chat", parents=[common], help="chat (the default command)")
    _chat_options(chat, False)

    sessions = sub.add_parser(
        "sessions",
        parents=[common],
        help="list, show, export, delete",
        description="Sessions of the user (--user, else defaults.user_id); --all-users on "
        "each action for operator access to every user's sessions.",
    )
    ssub = sessions.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ls = ssub.add_parser("list", parents=[common], help="list the user's sessions")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--cursor", default=None)
    ls.add_argument("--json", action="store_true")
    _all_users(ls)
    for name, text in (("show", "show a session"), ("delete", "delete a session")):
        sp = ssub.add_parser(name, parents=[common], help=text)
        sp.add_argument("session_id")
        if name == "show":
            sp.add_argument("--json", action="store_true")
        _all_users(sp)
    ex = ssub.add_parser("export", parents=[common], help="export a session's history")
    ex.add_argument("session_id")
    _all_users(ex)
    ex.add_argument("--format", choices=["jsonl", "markdown"], default="jsonl")
    ex.add_argument("--include-failed", action="store_true")
    ex.add_argument("--output", "-o", default=None, help="write to this file")

    plugins = sub.add_parser("plugins", parents=[common], help="list loaded plugins")
    plugins.add_argument("--all", action="store_true", help="include built-in plugins")
    plugins.add_argument("--json", action="store_true")

    config = sub.add_parser("config", parents=[common], help="validate, show, schema")
    csub = config.add_subparsers(dest="action", required=True, parser_class=_Parser)
    csub.add_parser("validate", parents=[common], help="check a swarm.yaml")
    csub.add_parser("show", parents=[common], help="print the effective config, secrets redacted")
    csub.add_parser("schema", parents=[common], help="print the JSON Schema of swarm.yaml")

    emu = sub.add_parser(
        "emulator",
        parents=[common],
        help=f"run the loopback provider emulator (offline demos) on port {EMULATOR_PORT}",
        description="Serve every provider's wire API on loopback until Ctrl-C, each under "
        "its own prefix (http://HOST:PORT/openai, /anthropic, ...); configs/offline.yaml "
        "points every provider at the default port.",
    )
    emu.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    emu.add_argument(
        "--port", type=_port, default=EMULATOR_PORT,
        help="port (default: %(default)s; 0: any free one)",
    )

    if plugin_commands:
        from langswarm_runtime.plugins import PluginManager

        PluginManager().pm.hook.register_commands(subparsers=sub)
    return parser


# -- helpers ---------------------------------------------------------------------------
def _manager(args: argparse.Namespace) -> Any:
    from langswarm_runtime.session.manager import SessionManager

    return SessionManager.from_config(_config_path(args))


def _user(args: argparse.Namespace, manager: Any) -> str | None:
    """The user a command acts as: ``--user``, else ``defaults.user_id``. None only for an
    explicit ``--all-users`` (operator access to every user's sessions)."""
    if getattr(args, "all_users", False):
        if args.user is not None:
            from langswarm_runtime.errors import ConfigError

            raise ConfigError("--all-users and --user exclude each other")
        return None
    return str(args.user) if args.user is not None else str(manager.config.defaults.user_id)


def _config_path(args: argparse.Namespace) -> str | None:
    """An explicit --config must exist; the implicit default may be absent (built-in
    defaults then apply: echo provider, SQLite sessions.db)."""
    if getattr(args, "config", None):
        return str(args.config)
    env = os.environ.get("LANGSWARM_CONFIG")
    if env:
        return env
    return "swarm.yaml" if Path("swarm.yaml").exists() else None


def _turn_json(session: Any, message: Any) -> str:
    usage = message.usage.model_dump() if message.usage else None
    data = {
        "session_id": session.session_id,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "usage": usage,
        "provider": session.provider,
        "model": session.model,
    }
    if message.tool_calls:  # calls the caller owes results for
        data["tool_calls"] = [c.model_dump(mode="json") for c in message.tool_calls]
    return json.dumps(data, ensure_ascii=False)


def _attachments(paths: Sequence[str]) -> list[Any]:
    """Parts for ``--attach`` files: images by their media type, other files as files."""
    import mimetypes

    from langswarm_runtime.session.parts import FilePart, ImagePart

    parts: list[Any] = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"--attach {name}: no such file")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            part = (ImagePart if kind.startswith("image/") else FilePart).from_path(path, kind)
        except OSError as exc:
            raise UsageError(f"--attach {name}: {exc.strerror}") from None
        parts.append(part)
    return parts


async def _one_turn(
    session: Any, text: str, args: argparse.Namespace, attach: Sequence[str] = ()
) -> None:
    content: Any = [text, *_attachments(attach)] if attach else text
    stream = not args.json and not args.no_stream and sys.stdout.isatty()
    # Tool activity is shown as it happens: with the reply on a terminal, else on
    # stderr (stdout keeps only the reply); --json prints the one turn object only.
    steps = None if args.json else (sys.stdout if stream else sys.stderr)
    final = None
    async for event in session.stream_events(content):
        if event.type == "text" and stream:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif event.type == "tool_call" and steps is not None:
            call = event.call
            print(f"  -> {call.name} {json.dumps(call.arguments, ensure_ascii=False)}",
                  file=steps, flush=True)  # fmt: skip
        elif event.type == "tool_result" and steps is not None:
            result = event.result
            mark = "error" if result.is_error else "ok"
            print(f"  <- {result.name} ({mark}): {_short(result.content)}", file=steps,
                  flush=True)  # fmt: skip
        elif event.type == "done":
            final = event.message
    assert final is not None
    if args.json:
        print(_turn_json(session, final), flush=True)
    elif stream:
        sys.stdout.write("\n")
    else:
        print(final.content, flush=True)
    if final.tool_calls and not args.json:
        _print_owed(final)


def _short(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _print_owed(message: Any) -> None:
    names = ", ".join(f"{c.name} ({c.id})" for c in message.tool_calls)
    print(f"the model asks for tools this process cannot run: {names}", file=sys.stderr)


def _print_history(messages: Sequence[Any]) -> None:
    from langswarm_runtime.session.turns import describe

    for m in messages:
        print(f"[{m.seq}] {m.role}: {describe(m)}")


#: Chat commands; any other line starting with ``/word`` is an error, never a message.
CHAT_COMMANDS = {
    "/exit": "leave the chat (also /quit, Ctrl-D, Ctrl-C)",
    "/quit": "leave the chat",
    "/history": "show the session's committed messages",
    "/help": "list these commands",
}
_COMMAND = re.compile(r"/[A-Za-z][\w-]*")


def _command_of(line: str) -> str | None:
    """The chat command a line is (``/history``), or None for a message. ``//text`` is the
    message ``/text``, and ``/usr/bin is...`` is a message: only ``/word`` is a command."""
    first = line.split(maxsplit=1)[0] if line.strip() else ""
    return first if _COMMAND.fullmatch(first) else None


def _known_commands() -> str:
    return ", ".join(sorted(CHAT_COMMANDS))


async def _read_line(prompt: str | None) -> str | None:
    """The next input line without its newline (None at end of input), with ``prompt``
    shown on a terminal. It is read on a daemon thread rather than the loop's executor:
    ``asyncio.run`` joins executor threads on exit, so Ctrl-C at an idle prompt would wait
    for the ``input()`` blocked there until Enter."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str | None] = loop.create_future()

    def deliver(result: str | None, error: BaseException | None) -> None:
        if done.done():  # cancelled by Ctrl-C meanwhile
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def read() -> None:
        result: str | None = None
        error: BaseException | None = None
        try:
            if prompt is not None:
                result = input(prompt)
            else:
                line = sys.stdin.readline()
                result = line[:-1] if line.endswith("\n") else (line or None)
        except EOFError:
            result = None
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
            error = exc
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop is gone: the chat already ended
            pass

    threading.Thread(target=read, name="langswarm-run stdin", daemon=True).start()
    return await done


async def _chat(args: argparse.Namespace) -> int:
    from langswarm_runtime.errors import SessionNotFound

    attach = getattr(args, "attach", None) or []
    if attach and args.message is None:
        raise UsageError("--attach needs -m/--message")
    _attachments(attach)  # unreadable files fail here, before a session exists
    async with _manager(args) as manager:
        user = _user(args, manager)
        if args.session:
            session = await manager.get_session(args.session, user_id=user)
            if session is None:
                raise SessionNotFound(f"session {args.session!r} not found")
            return await _converse(session, args)
        session = await manager.create_session(
            user_id=user,
            provider=args.provider,
            model=args.model,
            backend=args.backend,
            system_prompt=args.system,
        )
        try:
            result = await _converse(session, args)
        except BaseException:
            with contextlib.suppress(Exception):  # the refusal is the error to report
                await _forget_if_empty(manager, session)
            raise
        await _forget_if_empty(manager, session)
        return result


async def _forget_if_empty(manager: Any, session: Any) -> None:
    """Delete a session this command created when no message was ever stored in it: its
    first turn was refused before any provider call (empty, too large, rejected by a
    middleware...), or the chat ended before one. A turn that reached the provider leaves
    a stored (failed) message, and the session is kept."""
    if not await manager.storage.load_messages(session.session_id, last=1):
        await manager.delete_session(session.session_id, user_id=session.user_id)


async def _converse(session: Any, args: argparse.Namespace) -> int:
    if args.message is not None:
        if not args.json:
            print(f"session: {session.session_id}", file=sys.stderr)
        await _one_turn(session, args.message, args, getattr(args, "attach", None) or [])
        return EXIT_OK
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"session: {session.session_id}  (/help, /exit, Ctrl-D or Ctrl-C to leave)")
    elif not args.json:
        print(f"session: {session.session_id}", file=sys.stderr)
    while True:
        line = await _read_line("you> " if interactive else None)
        if line is None:
            if interactive:
                print()
            break
        if not line.strip():
            continue
        command = _command_of(line)
        if command in ("/exit", "/quit"):
            break
        if command == "/history":
            _print_history(await session.get_history())
        elif command == "/help":
            for name, text in sorted(CHAT_COMMANDS.items()):
                print(f"{name:10} {text}")
            print("//text     send the message /text")
        elif command is not None:
            message = (
                f"unknown command {command!r} (nothing was sent); known commands: "
                f"{_known_commands()}; start a line with // to send it as a message"
            )
            if not interactive:
                raise UnknownCommand(message)
            print(f"error: {message}", file=sys.stderr)
        else:
            text = line.lstrip()
            await _one_turn(session, text[1:] if text.startswith("//") else line, args)
    return EXIT_OK


async def _sessions(args: argparse.Namespace) -> int:
    from langswarm_runtime.errors import SessionNotFound

    async with _manager(args) as manager:
        user = _user(args, manager)
        if args.action == "list":
            records = await manager.list_sessions(user, limit=args.limit, cursor=args.cursor)
            for r in records:
                if args.json:
                    print(json.dumps(_record_json(r)))
                else:
                    print(
                        f"{r.session_id}  user={r.user_id}  provider={r.provider}  "
                        f"model={r.model}  backend={r.backend.value}  updated={_ts(r.updated_at)}"
                    )
            return EXIT_OK
        session = await manager.get_session(args.session_id, user_id=user)
        if session is None:
            raise SessionNotFound(f"session {args.session_id!r} not found")
        if args.action == "delete":
            await manager.delete_session(args.session_id, user_id=user)
            print(f"deleted {args.session_id}")
        elif args.action == "show":
            history = await session.get_history(include_failed=True)
            if args.json:
                data = _record_json(session.record)
                data["messages"] = [m.model_dump(mode="json") for m in history]
                print(json.dumps(data, ensure_ascii=False))
            else:
                r = session.record
                u = r.usage
                print(f"session:  {r.session_id}\nuser:     {r.user_id}")
                print(f"provider: {r.provider}  model: {r.model}  backend: {r.backend.value}")
                print(f"created:  {_ts(r.created_at)}  updated: {_ts(r.updated_at)}")
                print(
                    f"usage:    input={u.input_tokens} output={u.output_tokens} "
                    f"cached={u.cached_tokens} total={u.total_tokens}"
                )
                if r.middleware:
                    print("middleware: " + ", ".join(str(s.get("type")) for s in r.middleware))
                print(f"messages: {sum(1 for m in history if m.status == 'committed')}")
                from langswarm_runtime.session.turns import describe

                for m in history:
                    flag = "" if m.status == "committed" else f" ({m.status})"
                    print(f"[{m.seq}] {m.role}{flag}: {describe(m)}")
        else:  # export
            history = await session.get_history(include_failed=args.include_failed)
            if args.format == "jsonl":
                history = await _with_bytes(manager.storage, history)
            text = _export(session, history, args.format)
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
            else:
                sys.stdout.write(text)
    return EXIT_OK


def _ts(value: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _record_json(record: Any) -> dict[str, Any]:
    return dict(record.model_dump(mode="json"))


def _export(session: Any, history: Sequence[Any], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(
            json.dumps({"session_id": session.session_id, **m.model_dump(mode="json")},
                       ensure_ascii=False) + "\n"
            for m in history
        )
    lines = [f"# Session {session.session_id}", ""]
    lines.append(f"- user: {session.user_id}")
    lines.append(f"- provider: {session.provider} ({session.model}, {session.backend.value})")
    lines.append("")
    if session.system_prompt:
        lines += ["## system", "", session.system_prompt, ""]
    from langswarm_runtime.session.turns import describe

    for m in history:
        status = "" if m.status == "committed" else f" ({m.status})"
        lines += [f"## {m.role}{status}", "", describe(m), ""]
    return "\n".join(lines)


async def _with_bytes(storage: Any, history: Sequence[Any]) -> list[Any]:
    """Messages with the bytes of their stored media inline (base64 in JSON), so a
    jsonl export holds everything the session holds."""
    from langswarm_runtime.session.storage.blobs import with_bytes

    return await with_bytes(history, storage.load_blob, urls_too=True, strict=False)


async def _plugins(args: argparse.Namespace) -> int:
    from langswarm_runtime.config import load_config

    _, plugins = load_config(_config_path(args))
    infos = plugins.plugins(include_builtin=args.all)
    if args.json:
        print(json.dumps([_plain(i) for i in infos], indent=2))
        return EXIT_OK
    if not infos:
        print("no third-party plugins loaded (--all lists the built-in ones too)")
    for info in infos:
        d = _plain(info)
        types = ", ".join(d.get("types") or [])
        origin = f"{d.get('package') or '-'} {d.get('version') or ''}".strip()
        print(f"{d.get('name')}  ({origin})  {types}")
    return EXIT_OK


def _plain(info: Any) -> dict[str, Any]:
    if hasattr(info, "model_dump"):
        return dict(info.model_dump(mode="json"))
    if hasattr(info, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(info)
    return dict(info)


async def _config(args: argparse.Namespace) -> int:
    from langswarm_runtime.config import config_json_schema, load_config

    config, plugins = load_config(_config_path(args))
    if args.action == "schema":
        print(json.dumps(config_json_schema(plugins), indent=2))
    elif args.action == "show":
        import yaml

        print(yaml.safe_dump(config.redacted(), sort_keys=False), end="")
    else:
        from langswarm_runtime.runtime import Runtime

        runtime = Runtime(config=config, plugins=plugins)
        for note in runtime.validate():
            print(f"note: {note}")
        print(f"ok: {config.source or '(built-in defaults)'}")
    return EXIT_OK


def _emulator(args: argparse.Namespace) -> int:
    from langswarm_runtime.testing.emulator import main as emulator_main

    argv = ["--host", args.host, "--port", str(args.port)]
    return int(emulator_main(argv, prog="langswarm-run emulator") or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    # Plugin commands are only looked up for a word we do not know, to keep start-up fast.
    plugin_commands = first is not None and first not in BUILTIN_COMMANDS and not any(
        a in ("-m", "--message") for a in argv
    )
    debug = "--debug" in argv
    try:
        parser = build_parser(plugin_commands=plugin_commands)
        args = parser.parse_args(argv)
        command = args.command or "chat"
        if hasattr(args, "func"):
            return int(args.func(args) or 0)
        if command == "emulator":
            return _emulator(args)
        runner = {"chat": _chat, "sessions": _sessions, "plugins": _plugins, "config": _config}
        return asyncio.run(runner[command](args))
    except LangSwarmError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # On a terminal the cursor is still after the prompt (or a half reply).
        print("\ninterrupted" if sys.stderr.isatty() else "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
