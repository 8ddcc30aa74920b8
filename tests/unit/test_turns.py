"""Turns at the database: the listener's commits go ahead of the processor's work."""

from __future__ import annotations

import asyncio

from maildesk.turns import Turns


def test_a_waiting_listener_commit_goes_before_background_work() -> None:
    async def scenario() -> list[str]:
        turns, order = Turns(serialize=True), []
        release = asyncio.Event()

        async def urgent(name: str, hold: bool = False) -> None:
            async with turns.urgent():
                order.append(name)
                if hold:
                    await release.wait()

        first = asyncio.create_task(urgent("smtp-1", hold=True))
        await asyncio.sleep(0)
        background = asyncio.create_task(_background(turns, order))
        second = asyncio.create_task(urgent("smtp-2"))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, second, background)
        return order

    assert asyncio.run(scenario()) == ["smtp-1", "smtp-2", "process"]


def test_background_work_runs_when_the_listener_is_idle() -> None:
    async def scenario() -> list[str]:
        order: list[str] = []
        await _background(Turns(serialize=False), order)
        return order

    assert asyncio.run(scenario()) == ["process"]


def test_the_sender_waits_while_a_listener_commit_is_under_way() -> None:
    async def scenario() -> tuple[bool, bool]:
        turns, release, committing = Turns(serialize=False), asyncio.Event(), asyncio.Event()

        async def urgent() -> None:
            async with turns.urgent():
                committing.set()
                await release.wait()

        commit = asyncio.create_task(urgent())
        await committing.wait()
        quiet = asyncio.create_task(turns.quiet())
        for _ in range(5):
            await asyncio.sleep(0)
        waited = not quiet.done()
        release.set()
        await asyncio.gather(commit, quiet)
        return waited, quiet.done()

    assert asyncio.run(scenario()) == (True, True)


async def _background(turns: Turns, order: list[str]) -> None:
    async with turns.background():
        order.append("process")
