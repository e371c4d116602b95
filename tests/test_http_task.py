"""A handler's eager start inside a task of its own (``HTTPFactory(in_task=True)``, what
``asgi(app)`` does): ``statewire.protocols._http_task.start_in_task`` on its own, and over
a loopback port with an ASGI application that looks at its task and its context."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
from runtime_helpers import error_records, listen, scenario

from statewire._reactor import Reactor
from statewire.protocols._http_task import start_in_task
from statewire.protocols.asgi import asgi

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("SEEN", default="unset")
#: before Python 3.11 a task cannot be made in a chosen context: no eager start in a task
eager = pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.11 or later")


async def _in_a_callback(body: Callable[[asyncio.AbstractEventLoop], Any]) -> Any:
    """What ``body(loop)`` returns, run from a loop callback (no task current, as a
    transport's read runs)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    loop.call_soon(lambda: done.set_result(body(loop)))
    return await done


def _from_a_callback(body: Callable[[asyncio.AbstractEventLoop], Any]) -> Any:
    """:func:`_in_a_callback` in a loop of its own, which then turns a few times."""

    async def main() -> Any:
        result = await _in_a_callback(body)
        for _ in range(5):
            await asyncio.sleep(0)
        return result

    return asyncio.run(main())


@eager
def test_a_coroutine_that_never_waits_finishes_inside_the_call_as_its_own_task() -> None:
    seen: list[Any] = []

    async def handler() -> None:
        seen.append(asyncio.current_task())

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        task = start_in_task(handler(), lambda: loop)
        seen.append("returned")
        return task

    assert _from_a_callback(body) is None
    assert isinstance(seen[0], asyncio.Task) and seen[1] == "returned"
    assert seen[0].done() and not seen[0].cancelled() and seen[0].exception() is None


@eager
@pytest.mark.parametrize("wait", ["sleep(0)", "future", "sleep"])
def test_a_coroutine_that_waits_goes_on_in_the_same_task(wait: str) -> None:
    seen: list[Any] = []

    async def handler(loop: asyncio.AbstractEventLoop) -> None:
        first = asyncio.current_task()
        SEEN.set("first step")
        if wait == "sleep(0)":
            await asyncio.sleep(0)  # a bare yield: the task's step gets None
        elif wait == "future":
            future = loop.create_future()
            loop.call_later(0.01, future.set_result, None)
            await future
        else:
            await asyncio.sleep(0.01)
        seen.extend([first, asyncio.current_task(), SEEN.get()])

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        task = start_in_task(handler(loop), lambda: loop)
        assert not seen  # (it waits: nothing after the first step ran yet)
        return task

    async def main() -> None:
        task = await _in_a_callback(body)
        assert isinstance(task, asyncio.Task)
        await task
        assert SEEN.get() == "unset"  # the handler's context is its task's, not the loop's

    asyncio.run(main())
    first, later, value = seen
    assert first is later and isinstance(first, asyncio.Task)
    assert value == "first step"  # set in the first step, read in its task after the wait


@eager
def test_an_exception_before_the_first_wait_propagates_and_its_task_ends_quietly() -> None:
    async def handler() -> None:
        raise KeyError("before any wait")

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        try:
            start_in_task(handler(), lambda: loop)
        except KeyError as error:
            return error
        return None

    with error_records() as errors:
        assert isinstance(_from_a_callback(body), KeyError)
    assert not errors  # (no "Task exception was never retrieved")


def test_fed_from_inside_a_task_it_starts_as_a_task_s_first_step() -> None:
    seen: list[Any] = []

    async def handler() -> None:
        seen.append(asyncio.current_task())

    async def main() -> None:
        outer = asyncio.current_task()
        task = start_in_task(handler(), asyncio.get_running_loop)
        assert isinstance(task, asyncio.Task) and not seen  # not run yet: scheduled
        await task
        assert seen == [task] and task is not outer

    asyncio.run(main())


def test_a_task_cancelled_before_its_turn_cancels_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []

    async def handler(loop: asyncio.AbstractEventLoop) -> None:
        try:
            await loop.create_future()  # never done
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> None:
        task = await _in_a_callback(lambda loop: start_in_task(handler(loop), lambda: loop))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled"]


@eager
def test_a_cancelled_error_raised_before_the_first_wait_ends_the_task_cancelled() -> None:
    async def handler() -> None:
        raise asyncio.CancelledError

    async def main() -> None:
        # (no exception out of the call: a transport's read goes on)
        task = await _in_a_callback(lambda loop: start_in_task(handler(), lambda: loop))
        assert isinstance(task, asyncio.Task)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(main())


@eager
def test_a_task_whose_coroutine_ended_in_its_first_step_is_done_and_cannot_be_cancelled() -> None:
    # as Python 3.12's eager start leaves it: done at once, with nothing scheduled
    tasks: list[asyncio.Task[Any]] = []

    async def handler() -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        assert start_in_task(handler(), lambda: loop) is None
        (task,) = tasks
        assert task.done() and not task.cancelled() and task.result() is None
        assert not task.cancel()  # (done: nothing to cancel)
        assert task not in asyncio.all_tasks(loop)
        return task

    async def main() -> None:
        task = await _in_a_callback(body)
        assert await task is None
        assert task.get_loop() is asyncio.get_running_loop()
        assert "finished" in repr(task) and task.get_stack() == []

    with error_records() as errors:
        asyncio.run(main())
    assert not errors


def test_a_loop_s_task_factory_gets_the_coroutine_itself_and_runs_it_as_a_task() -> None:
    wrapped: list[str] = []
    seen: list[Any] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> Any:
        async def instrumented() -> None:  # as tracing integrations wrap coroutines
            wrapped.append("in")
            await coro
            wrapped.append("out")

        return asyncio.Task(instrumented(), loop=loop, **options)

    async def handler() -> None:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        task = start_in_task(handler(), lambda: loop)
        assert isinstance(task, asyncio.Task) and not seen  # scheduled, not started
        return task

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(factory)
        await (await _in_a_callback(body))
        loop.set_task_factory(None)

    asyncio.run(main())
    assert wrapped == ["in", "out"] and seen[0] is seen[1] is not None


# -- through asgi(app) on a loopback port ------------------------------------------------------


@eager
def test_an_asgi_app_has_its_task_from_its_first_line_and_keeps_its_context() -> None:
    seen: list[tuple[str, Any, str]] = []

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        path = scope["path"]
        before = SEEN.get()
        first = asyncio.current_task()
        SEEN.set(path)
        if path == "/wait":
            await asyncio.sleep(0.01)
        assert asyncio.current_task() is first
        seen.append((path, first, before))
        body = f"{path} {SEEN.get()}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=20
        ) as client:
            for path in ("/now", "/wait", "/now", "/wait"):
                response = await client.get(path)
                assert response.text == f"{path} {path}"

    with error_records() as errors:
        scenario(main, timeout=60)
    assert not errors
    assert [path for path, _, _ in seen] == ["/now", "/wait", "/now", "/wait"]
    tasks = [task for _, task, _ in seen]
    assert all(isinstance(task, asyncio.Task) for task in tasks)
    assert len({id(task) for task in tasks}) == 4  # a task a request
    assert [before for _, _, before in seen] == ["unset"] * 4  # no request sees another's


@eager
def test_an_anyio_task_group_and_cancel_scope_work_in_the_first_step() -> None:
    anyio = pytest.importorskip("anyio")

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        results: list[str] = []

        async def child(name: str) -> None:
            await anyio.sleep(0)
            results.append(name)

        async with anyio.create_task_group() as group:
            group.start_soon(child, "a")
            group.start_soon(child, "b")
        with anyio.move_on_after(0.01):
            await anyio.sleep(5)  # cancelled by its scope
            results.append("not reached")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": " ".join(sorted(results)).encode()})

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=20
        ) as client:
            response = await client.get("/")
            assert (response.status_code, response.text) == (200, "a b")

    with error_records() as errors:
        scenario(main, timeout=60)
    assert not errors
