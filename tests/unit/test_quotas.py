"""The bulkheads' counting: caps per token, per account and per process, and
nothing counted for a refused request."""

from __future__ import annotations

import pytest

from api.problems import Problem
from api.quotas import Quotas
from infrastructure.settings import Settings


def quotas(**limits: int) -> Quotas:
    return Quotas(Settings(database_url="postgresql://x@127.0.0.1/x", **limits))


def test_waits_per_token_are_capped_and_given_back() -> None:
    q = quotas(max_waits_per_token=2)
    with q.wait("t1"), q.wait("t1"):
        with pytest.raises(Problem) as refused, q.wait("t1"):
            pass
        assert refused.value.status == 429
        assert refused.value.headers["Retry-After"] == "1"
        with q.wait("t2"):  # another token is not affected
            pass
    with q.wait("t1"), q.wait("t1"):  # both given back, even the refused one took nothing
        pass
    assert not q.waits.held


def test_a_wait_that_fails_gives_its_slot_back() -> None:
    q = quotas(max_waits_per_token=1)
    with pytest.raises(TimeoutError), q.wait("t"):
        raise TimeoutError
    with q.wait("t"):
        pass


@pytest.mark.parametrize(
    ("opened", "token", "account", "status"),
    [
        ([("t1", "a")] * 2, "t1", "a", 429),  # the token's cap
        ([("t1", "a"), ("t2", "a"), ("t3", "a")], "t4", "a", 429),  # the account's cap
        ([("t1", "a"), ("t2", "b"), ("t3", "c"), ("t4", "d")], "t5", "e", 503),  # the process's cap
    ],
)
def test_stream_caps(opened: list[tuple[str, str]], token: str, account: str, status: int) -> None:
    q = quotas(max_streams_per_token=2, max_streams_per_account=3, max_streams=4)
    for t, a in opened:
        q.open_stream(t, a)
    with pytest.raises(Problem) as refused:
        q.open_stream(token, account)
    assert refused.value.status == status
    assert int(refused.value.headers["Retry-After"]) >= 1
    # A refused stream counted nothing; closing one makes room again.
    q.close_stream(*opened[-1])
    q.open_stream(token, account)
    q.close_stream(token, account)
    for t, a in opened[:-1]:
        q.close_stream(t, a)
    assert not (q.streams.held or q.token_streams.held or q.account_streams.held)
