"""The PII entity names, apart from the detectors so that registering the ``pii_filter``
plugin (which needs them for its config model) does not compile every pattern at
start-up."""

from __future__ import annotations

from typing import Literal

__all__ = ["ENTITIES", "Entity"]

Entity = Literal["email", "phone", "credit_card", "iban", "ssn", "ipv4", "ipv6", "api_key"]
#: In priority order: on overlap, the earlier entity wins.
ENTITIES: tuple[Entity, ...] = (
    "api_key", "email", "iban", "credit_card", "ssn", "ipv6", "ipv4", "phone",
)
