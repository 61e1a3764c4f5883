"""pii_filter: detection quality on a labelled corpus, modes, directions, registration."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from langswarm_runtime.errors import ConfigError, MessageRejected
from langswarm_runtime.middleware.pii import PIIFilterConfig, PIIFilterMiddleware
from langswarm_runtime.middleware.pii_detect import ENTITIES, find_pii
from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.session.middleware import run_incoming, run_outgoing
from langswarm_runtime.session.models import Message

CORPUS = Path(__file__).parent / "data" / "pii_corpus.jsonl"
S1 = SimpleNamespace(session_id="sess-one", user_id="u1")
S2 = SimpleNamespace(session_id="sess-two", user_id="u1")


def load_corpus() -> list[dict[str, object]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def test_corpus_precision_and_recall() -> None:
    rows = load_corpus()
    assert len(rows) >= 300
    negatives = sum(1 for r in rows if not r["pii"])
    assert negatives >= 100  # hard negatives: orders, dates, versions, ISBNs, UUIDs...
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for row in rows:
        want = Counter((e, v) for e, v in row["pii"])  # type: ignore[union-attr]
        got = Counter((f.entity, f.value) for f in find_pii(str(row["text"])))
        for key in want | got:
            hit = min(want[key], got[key])
            tp[key[0]] += hit
            fp[key[0]] += got[key] - hit
            fn[key[0]] += want[key] - hit
    print()
    for entity in ENTITIES:
        p = tp[entity] / max(1, tp[entity] + fp[entity])
        r = tp[entity] / max(1, tp[entity] + fn[entity])
        print(f"{entity:12} n={tp[entity] + fn[entity]:3} precision={p:.3f} recall={r:.3f}")
        assert tp[entity] + fn[entity] >= 25, f"too few {entity} examples"
        assert p >= 0.95 and r >= 0.95, entity
    total_tp = sum(tp.values())
    precision = total_tp / (total_tp + sum(fp.values()))
    recall = total_tp / (total_tp + sum(fn.values()))
    print(f"overall      precision={precision:.3f} recall={recall:.3f}")
    assert precision >= 0.95
    assert recall >= 0.95


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("order 4111111111111112", None),  # fails Luhn
        ("card 4111 1111 1111 1111", "credit_card"),
        ("iban DE89 3704 0044 0532 0130 01", None),  # checksum off by one
        ("iban DE89 3704 0044 0532 0130 00", "iban"),
        ("released v2.10.3.4 today", None),
        ("from 10.20.30.40 today", "ipv4"),
        ("at 12:30:45 sharp", None),
        ("ssn 666-12-3456", None),  # never issued
        ("token: aaaaaaaaaaaaaaaaaaaaaaaa", None),  # key-like cue, but no entropy
        ("token: Zx8kQ2mP9vL4nR7tY1wB", "api_key"),
    ],
)
def test_checksums_and_lookalikes(text: str, entity: str | None) -> None:
    found = {f.entity for f in find_pii(text)}
    assert found == ({entity} if entity else set())


async def test_redact_is_the_default_and_covers_both_directions() -> None:
    mw = PIIFilterMiddleware()
    msg = Message(role="user", content="mail jane@example.com or call +44 20 7946 0958")
    out = await run_outgoing([mw], S1, msg)
    assert out.content == "mail [EMAIL] or call [PHONE]"
    assert out.metadata["pii_filtered"] == {"email": 1, "phone": 1}
    assert msg.content.startswith("mail jane@")  # the input message is not mutated
    back = await run_incoming([mw], S1, Message(role="assistant", content="ok jane@example.com"))
    assert back.content == "ok [EMAIL]"


async def test_clean_message_is_returned_unchanged() -> None:
    msg = Message(role="user", content="release 1.2.3 ships on 2024-05-01, order 12345678")
    assert await run_outgoing([PIIFilterMiddleware()], S1, msg) is msg


def test_mask_keeps_shape_and_last_digits() -> None:
    mw = PIIFilterMiddleware(mode="mask")
    text, _ = mw.filter_text(S1, "card 4111-1111-1111-1111 mail jane@example.com ip 10.1.2.3")
    assert text == "card ****-****-****-1111 mail j***@example.com ip **.*.*.*"
    text, _ = mw.filter_text(S1, "ssn 078-05-1120, key AKIAIOSFODNN7EXAMPLE")
    assert text == "ssn ***-**-1120, key ********************"


def test_hash_is_stable_per_session_and_tells_values_apart() -> None:
    mw = PIIFilterMiddleware(mode="hash")
    a1, _ = mw.filter_text(S1, "a@example.com and b@example.com and A@EXAMPLE.COM")
    tags = re.findall(r"\[EMAIL:([0-9a-f]{6})\]", a1)
    assert len(tags) == 3
    assert tags[0] != tags[1]  # two different people stay distinguishable
    assert tags[0] == tags[2]  # the same address, differently cased
    again, _ = mw.filter_text(S1, "a@example.com")
    assert again == f"[EMAIL:{tags[0]}]"  # stable across messages of one session
    other, _ = PIIFilterMiddleware(mode="hash").filter_text(S2, "a@example.com")
    assert other != again  # not linkable across sessions
    p1, _ = mw.filter_text(S1, "(415) 555-2671")
    p2, _ = mw.filter_text(S1, "+1 415 555 2671")
    assert p1 == p2  # phone formats normalise before hashing


def test_block_names_types_never_values() -> None:
    mw = PIIFilterMiddleware(mode="block", entities=["email", "credit_card"])
    with pytest.raises(MessageRejected) as info:
        mw.filter_text(S1, "jane@example.com 4111 1111 1111 1111")
    assert "credit_card, email" in str(info.value)
    assert "jane" not in str(info.value) and "4111" not in str(info.value)
    assert info.value.middleware == "pii_filter"
    # Entities not selected pass.
    text, _ = mw.filter_text(S1, "call +44 20 7946 0958")
    assert text == "call +44 20 7946 0958"


async def test_directions_and_entity_selection() -> None:
    mw = PIIFilterMiddleware(directions=["outgoing"], entities=["ip_address"])
    out = await run_outgoing([mw], S1, Message(role="user", content="10.0.0.1 / fe80::1 / x@y.io"))
    assert out.content == "[IPV4] / [IPV6] / x@y.io"
    back = await run_incoming([mw], S1, Message(role="assistant", content="10.0.0.1"))
    assert back.content == "10.0.0.1"


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown entity 'passport'"):
        PIIFilterMiddleware(entities=["passport"])
    with pytest.raises(ConfigError, match="pii_filter.mode"):
        PIIFilterMiddleware(mode="shred")
    with pytest.raises(ConfigError, match="pii_filter.colour"):
        PIIFilterMiddleware(colour="red")


def test_registered_through_the_plugin_hook() -> None:
    pm = PluginManager(load_entrypoints=False)
    mw = pm.middlewares.create("pii_filter", {"mode": "hash", "entities": ["email"]})
    assert isinstance(mw, PIIFilterMiddleware)
    assert isinstance(mw.config, PIIFilterConfig) and mw.config.mode == "hash"
    for name in ("validation", "audit_log"):
        assert pm.middlewares.create(name, {}) is not None


def test_no_regex_compiled_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    mw = PIIFilterMiddleware()

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("re.compile called while filtering")

    monkeypatch.setattr(re, "compile", forbidden)
    text, counts = mw.filter_text(S1, "jane@example.com, 4111 1111 1111 1111, 10.0.0.1")
    assert sum(counts.values()) == 3
    assert text == "[EMAIL], [CREDIT_CARD], [IPV4]"


def test_does_not_claim_to_filter_deltas() -> None:
    # A value split across deltas cannot be caught one delta at a time; the final
    # message is filtered before it is committed instead (see the module docstring).
    assert PIIFilterMiddleware.filters_deltas is False
