"""The pool of cores by token (dandifs.core.pool): one core per token, opened once, a
rejection remembered, the least recently used closed beyond capacity."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from dandifs import errors
from dandifs.core import CorePool


# -- the pool --------------------------------------------------------------------------


class CountingCore:
    requests_made = 0

    def __init__(self, token):
        self.token = token
        self.closed = False


def test_the_pool_validate_once_reject_and_evict():
    opened: list[str | None] = []
    cores_made: list[CountingCore] = []

    @asynccontextmanager
    async def opener(token):
        opened.append(token)
        if token == "bad":
            raise errors.InvalidToken("no")
        core = CountingCore(token)
        cores_made.append(core)
        try:
            yield core
        finally:
            core.closed = True

    async def scenario():
        pool = CorePool(opener, capacity=2)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            anonymous = await pool.get(None)
            assert await pool.get(None) is anonymous
            a = await pool.get("a")
            assert await pool.get("a") is a
            for _ in range(2):
                with pytest.raises(errors.InvalidToken):
                    await pool.get("bad")
            await pool.get("b")
            await pool.get("c")  # evicts "a", the least recently used
            await trio.testing.wait_all_tasks_blocked()
            assert a.closed and not anonymous.closed
            await pool.aclose()
        assert all(core.closed for core in cores_made)

    trio.run(scenario)
    assert opened == [None, "a", "bad", "b", "c"]


def test_the_pool_open_once_per_token_without_blocking_others():
    opened: list[str | None] = []
    release = {}

    @asynccontextmanager
    async def opener(token):
        opened.append(token)
        if token == "slow":
            await release["slow"].wait()
        yield CountingCore(token)

    async def scenario():
        release["slow"] = trio.Event()
        pool = CorePool(opener)
        got = []
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)

            async def fetch(token):
                got.append(await pool.get(token))

            for _ in range(3):
                nursery.start_soon(fetch, "slow")
            await trio.testing.wait_all_tasks_blocked()
            await pool.get(None)  # not held up by the slow token
            assert len(got) == 0
            release["slow"].set()
            await trio.testing.wait_all_tasks_blocked()
            assert len(got) == 3 and got[0] is got[1] is got[2]
            await pool.aclose()

    trio.run(scenario)
    assert opened == ["slow", None]


def test_the_pool_opens_again_for_waiters_when_the_opening_caller_is_cancelled():
    opened: list[str | None] = []
    release = trio.Event()

    @asynccontextmanager
    async def opener(token):
        opened.append(token)
        if len(opened) == 1:
            await release.wait()  # the first opening hangs until its caller gives up
        yield CountingCore(token)

    async def scenario():
        pool = CorePool(opener)
        got = []
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            leader = trio.CancelScope()
            nursery.start_soon(_get_in, leader, pool, "t")
            await trio.testing.wait_all_tasks_blocked()

            async def follower():
                got.append(await pool.get("t"))

            nursery.start_soon(follower)
            await trio.testing.wait_all_tasks_blocked()
            leader.cancel()
            await trio.testing.wait_all_tasks_blocked()
            # The follower was not cancelled: it opened the core itself.
            assert len(got) == 1 and got[0].token == "t"
            release.set()
            await pool.aclose()
        assert opened == ["t", "t"]

    trio.run(scenario)


async def _get_in(scope: trio.CancelScope, pool: CorePool, token: str) -> None:
    with scope:
        await pool.get(token)
