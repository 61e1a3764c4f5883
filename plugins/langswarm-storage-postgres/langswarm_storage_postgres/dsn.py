"""Reading a DSN for messages without leaking its secrets."""

from __future__ import annotations

from typing import Any

__all__ = ["describe", "dsn_params", "scrub"]


def dsn_params(dsn: str) -> dict[str, Any] | None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn)
    except psycopg.Error:
        return None


def describe(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages: never the user or password."""
    params = dsn_params(dsn)
    if params is None:  # an unparsable DSN still must not leak into the message
        return "<unparsable dsn>"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = params.get("dbname")
    return f"{host}:{port}" + (f"/{dbname}" if dbname else "")


def scrub(text: str, dsn: str) -> str:
    """Remove the password (if any) from a driver message, to be safe."""
    params = dsn_params(dsn)
    if params is None:  # the driver may quote pieces of an unparsable DSN: say nothing
        return "invalid DSN (not a libpq URL or key=value string)"
    password = params.get("password")
    if password:
        text = text.replace(str(password), "***")
    return text
