"""The message-count fast path of the truncate policy selects exactly what the general
turn grouping does, for any mix of roles, window size and read boundary."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from langswarm_runtime.session.context import _fit, _group_turns, _newest_turns
from langswarm_runtime.session.models import Message

roles = st.sampled_from(["user", "assistant", "assistant", "user", "summary", "system"])


@given(st.lists(roles, max_size=40), st.booleans(), st.integers(1, 30) | st.just(math.inf))
def test_fast_path_matches_turn_grouping(
    role_list: list[str], at_start: bool, max_messages: float
) -> None:
    messages = [Message(role=r, content=f"{r} {i}", seq=i) for i, r in enumerate(role_list)]  # type: ignore[arg-type]
    turns = _group_turns(messages, at_start, None)
    n = _fit(turns, max_messages, math.inf)
    want = [m.seq for turn in turns[len(turns) - n :] for m in turn.messages]
    got, all_fit = _newest_turns(messages, at_start, max_messages)
    assert [m.seq for m in got] == want
    assert all_fit == (n == len(turns))
