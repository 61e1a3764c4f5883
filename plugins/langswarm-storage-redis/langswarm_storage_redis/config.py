"""Options of the ``redis`` storage block in swarm.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["RedisStorageConfig"]


class RedisStorageConfig(BaseModel):
    """``storage: {type: redis, url: redis://:password@host:6379/0, ...}``.

    ``url`` is a secret because it may carry a password; it is never logged or shown in
    errors (they name host, port and database only).
    """

    # Inputs stay out of validation errors: the URL may carry a password.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["redis"] = "redis"
    url: SecretStr
    #: Every key starts with this, so several apps (or test runs) can share one Redis.
    key_prefix: str = Field(default="langswarm:", min_length=1)
    #: Expire a session (record and messages) this many seconds after its last write.
    #: None keeps sessions until deleted.
    ttl_seconds: int | None = Field(default=None, ge=1)
    socket_timeout: float = Field(default=5.0, gt=0)
    socket_connect_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=50, ge=1)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        # Say what is wrong without echoing the URL (it may hold a password).
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        return value
