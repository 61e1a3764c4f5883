"""Options of the ``postgres`` storage block in swarm.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["PostgresStorageConfig"]


class PostgresStorageConfig(BaseModel):
    """``storage: {type: postgres, dsn: postgresql://user:pw@host:5432/db, ...}``.

    ``dsn`` is a libpq connection string (URL or ``key=value`` form); it is a secret
    because it may carry a password, and it is never logged or shown in errors.
    """

    # ``schema`` is the YAML key; the attribute is ``schema_name`` because pydantic models
    # already have a ``schema`` attribute. Inputs stay out of validation errors: the DSN
    # may carry a password.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)

    type: Literal["postgres"] = "postgres"
    dsn: SecretStr
    #: Schema holding the tables; created if missing. Several apps can share a database
    #: by using different schemas.
    schema_name: str = Field(
        default="langswarm",
        alias="schema",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    #: Seconds a caller waits for a free pooled connection before StorageError.
    pool_timeout: float = Field(default=10.0, gt=0)
    #: Server-side limit for every statement; 0 disables it.
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    #: Seconds to wait for a TCP connection to the server.
    connect_timeout: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _pool_sizes(self) -> PostgresStorageConfig:
        if self.pool_max_size < self.pool_min_size:
            raise ValueError(
                f"pool_max_size ({self.pool_max_size}) must be >= pool_min_size "
                f"({self.pool_min_size})"
            )
        return self
