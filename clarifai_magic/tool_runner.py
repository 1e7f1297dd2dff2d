"""Running a turn's tool calls: concurrently, bounded, cancellable.

Pure Python (no IPython, no pydantic: a :class:`~clarifai_magic.tools.Tool` validates its own
arguments). :class:`ToolRunner` runs the calls of one model turn concurrently: sync tools on
daemon threads, ``async def`` tools on one background event loop it owns, so it works while the
caller's thread runs its own loop (as ipykernel does). Every failure (unknown tool, bad JSON,
arguments nested too deeply, invalid arguments, timeout, exception, refusal, cancellation)
becomes a :class:`ToolOutcome` whose ``content`` tells the model what went wrong, so the
conversation can go on. A running tool learns that the turn was cancelled (or its timeout
passed) from :func:`cancelled` and :func:`cancel_event`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .tool_calls import (
    MAX_RESULT_CHARS,
    Prepared,
    Ran,
    ToolCallLike,
    ToolOutcome,
    cancelled_outcome,
    caught,
    exception_message,
    failed,
    prepare,
    serialize_result,
)

if TYPE_CHECKING:
    from .tools import Tool

# How many calls of one run_calls may run at once: sync tools (one daemon thread each) and async
# tools (tasks on the runner's loop). The rest wait their turn.
MAX_TOOL_THREADS = 16
MAX_TOOL_TASKS = 64
# How often the waiting thread looks at the caller's cancel event.
_POLL_SECONDS = 0.1

# The Event of the tool call running in this context (its thread, or its asyncio task).
_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "clarifai_magic_tool_cancel", default=None
)


def cancel_event() -> threading.Event | None:
    """The Event that is set when the runner stops waiting for the tool call running here.

    It is set when the user cancels the turn (the widget's Stop, the kernel's interrupt) or the
    call's ``timeout`` passes. Python can't stop a sync function from outside, so a long sync
    tool should look at it, e.g. ``cancel_event().wait(5)`` instead of ``time.sleep(5)``. ``None``
    outside a tool call, and in threads a tool starts itself (unless they copy its context).
    """
    return _CANCEL.get()


def cancelled() -> bool:
    """Whether the tool call running here has been cancelled (see :func:`cancel_event`).

    A sync tool that loops or waits can return early when this turns True: its result would no
    longer reach the model. ``False`` outside a tool call.
    """
    event = _CANCEL.get()
    return event is not None and event.is_set()


@dataclasses.dataclass
class _Running:
    """A call handed to execution: what to wait on, and how to tell it to stop."""

    index: int
    prepared: Prepared
    is_async: bool
    event: threading.Event = dataclasses.field(default_factory=threading.Event)
    future: concurrent.futures.Future[Ran] = dataclasses.field(
        default_factory=concurrent.futures.Future
    )
    thread: threading.Thread | None = None
    began: float = 0.0

    @property
    def deadline(self) -> float | None:
        timeout = self.prepared.tool.timeout
        return None if timeout is None else self.began + timeout

    def stop(self) -> None:
        """Tell the tool to stop: its cancel event for sync tools, task cancellation for async."""
        self.event.set()
        # An async tool's future, once cancelled, cancels its task on the loop (_start_task); a
        # sync tool's future is only marked, so its late result is dropped.
        self.future.cancel()


class ToolRunner:
    """Runs a turn's tool calls concurrently; owns one background event loop for async tools.

    The loop thread starts on first need and stops with :meth:`close` (or ``with`` exit); a later
    :meth:`run_calls` starts it again. Sync tools each get a daemon thread, so a tool that never
    returns can't block the interpreter's exit the way a ``ThreadPoolExecutor`` worker would.
    One :meth:`run_calls` runs at most ``max_threads`` sync calls and ``max_tasks`` async calls
    at once; the others wait their turn, so a response with thousands of calls starts no more
    threads than that.

    When the turn is cancelled (the caller's ``cancel`` Event, or KeyboardInterrupt in the thread
    waiting in :meth:`run_calls`) or a call's timeout passes, async tools have their task
    cancelled and sync tools have their cancel event set (:func:`cancelled`,
    :func:`cancel_event`). Python can't stop a sync function from outside: one that doesn't look
    keeps running on its daemon thread until it returns, and its result is dropped. Such a thread
    no longer counts against ``max_threads``.
    """

    def __init__(
        self, max_threads: int = MAX_TOOL_THREADS, max_tasks: int = MAX_TOOL_TASKS
    ) -> None:
        if max_threads < 1 or max_tasks < 1:
            raise ValueError("max_threads and max_tasks must be at least 1")
        self.max_threads, self.max_tasks = max_threads, max_tasks
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Set by close(): a sync tool left running past its timeout must not start a new loop
        # (nobody would stop it); only run_calls reopens the runner.
        self._closed = False

    def __enter__(self) -> ToolRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the tool runner was closed while this tool ran")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._serve, args=(self._loop,), name="clarifai-magic-tools", daemon=True
                )
                self._thread.start()
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:  # bounded: a tool may catch CancelledError and carry on
                loop.run_until_complete(asyncio.wait(pending, timeout=1))
            loop.close()

    def close(self) -> None:
        """Stop the background loop (cancelling async tools still running)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._closed = True
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    def run_calls(
        self,
        calls: Sequence[ToolCallLike],
        tools: Mapping[str, Tool],
        *,
        confirm: Callable[[Tool, dict[str, Any]], bool] | None = None,
        max_result_chars: int | None = None,
        cancel: threading.Event | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> list[ToolOutcome]:
        """Run ``calls``; one outcome per call, in the same order.

        Each result is cut to ``max_result_chars`` (default :data:`MAX_RESULT_CHARS`).

        Arguments are parsed, validated and converted first; then ``confirm`` (if given) is asked,
        in this thread and one call at a time, about each tool declared with ``confirm=True``
        (without a callback such tools just run). The accepted calls then run concurrently, each
        within its tool's timeout (counted from its start), at most ``max_threads`` sync and
        ``max_tasks`` async calls at a time. ``on_start(i)`` is called in this thread just before
        ``calls[i]`` starts.

        When ``cancel`` is set (it is looked at every 0.1 s), every call not finished is stopped
        (see the class docstring) and its outcome says the user cancelled it; calls that never
        started get the same outcome and ``on_start`` is never called for them. A
        KeyboardInterrupt while waiting stops the calls the same way, then propagates.
        """
        max_result_chars = max_result_chars or MAX_RESULT_CHARS
        with self._lock:
            self._closed = False
        outcomes: list[ToolOutcome | None] = [None] * len(calls)
        # Accepted calls not started yet, sync (False) and async (True), each in call order.
        waiting: dict[bool, collections.deque[tuple[int, Prepared]]] = {
            False: collections.deque(),
            True: collections.deque(),
        }
        for i, call in enumerate(calls):
            prepared = prepare(call, tools, max_result_chars)
            if isinstance(prepared, ToolOutcome):
                outcomes[i] = prepared
            elif (
                prepared.tool.confirm
                and confirm is not None
                and not confirm(prepared.tool, prepared.arguments)
            ):
                message = f"The user declined to run {call.name}."
                outcomes[i] = ToolOutcome(
                    call.id, call.name, prepared.arguments, message, False, "declined by the user"
                )
            else:
                waiting[prepared.tool.is_async].append((i, prepared))

        running: dict[int, _Running] = {}
        try:
            while (waiting[False] or waiting[True] or running) and not (
                cancel is not None and cancel.is_set()
            ):
                self._start_waiting(waiting, running, on_start)
                _wait_for_any(running.values())
                self._collect_done(running, outcomes, max_result_chars)
            self._collect_done(running, outcomes, max_result_chars)  # those that beat the cancel
        except BaseException:
            # The kernel's interrupt (or a failing on_start): nothing may run on unseen.
            for record in running.values():
                record.stop()
            raise
        for i, record in running.items():
            record.stop()
            outcomes[i] = cancelled_outcome(record.prepared.call, record.prepared.arguments)
        for queue in waiting.values():
            for i, prepared in queue:
                outcomes[i] = cancelled_outcome(prepared.call, prepared.arguments)
        return [o for o in outcomes if o is not None]

    def _start_waiting(
        self,
        waiting: dict[bool, collections.deque[tuple[int, Prepared]]],
        running: dict[int, _Running],
        on_start: Callable[[int], None] | None,
    ) -> None:
        for is_async, limit in ((False, self.max_threads), (True, self.max_tasks)):
            queue = waiting[is_async]
            busy = sum(1 for r in running.values() if r.is_async is is_async)
            while queue and busy < limit:
                i, prepared = queue.popleft()
                if on_start is not None:
                    on_start(i)
                # Registered before it starts, so an interrupt from here on still reaches it.
                running[i] = record = _Running(i, prepared, is_async)
                self._start(record)
                busy += 1

    def _start(self, record: _Running) -> None:
        func, args, kwargs = record.prepared.tool.func, record.prepared.args, record.prepared.kwargs
        record.began = time.monotonic()
        if record.is_async:
            _start_task(
                self._event_loop(),
                lambda: self._run_async(func, args, kwargs, record.event),
                record,
            )
            return
        context = contextvars.copy_context()  # e.g. which cell a print() belongs to
        record.thread = threading.Thread(
            target=context.run,
            args=(self._run_sync, func, args, kwargs, record.future, record.event),
            name=f"clarifai-magic-tool-{record.prepared.tool.name}",
            daemon=True,
        )
        record.thread.start()

    def _collect_done(
        self, running: dict[int, _Running], outcomes: list[ToolOutcome | None], max_chars: int
    ) -> None:
        now = time.monotonic()
        for i, record in list(running.items()):
            if record.future.done():
                del running[i]
                if record.thread is not None:
                    # It has handed over its result and is returning: wait for it to be gone, so
                    # the next call's thread doesn't briefly make one more than max_threads.
                    record.thread.join(timeout=5)
                outcomes[i] = _outcome(record, max_chars)
            elif (deadline := record.deadline) is not None and now >= deadline:
                record.stop()  # first: an interrupt between the two must still find it
                del running[i]
                call, spec = record.prepared.call, record.prepared.tool
                error = f"{call.name} did not finish within {spec.timeout:g} seconds."
                outcome = failed(call, record.prepared.arguments, error)
                outcome.duration = now - record.began
                outcomes[i] = outcome

    def _run_sync(
        self,
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        future: concurrent.futures.Future[Ran],
        event: threading.Event,
    ) -> None:
        _CANCEL.set(event)  # in this call's own copy of the caller's context
        started = time.perf_counter()
        try:
            value = func(*args, **kwargs)
            if inspect.isawaitable(value):  # a sync wrapper around a coroutine
                value = self._await_in_loop(value, event)
            ran = Ran(value, duration=time.perf_counter() - started)
        except BaseException as exc:  # a tool's sys.exit() or KeyboardInterrupt is its failure
            ran = caught(exc, started)
        if future.set_running_or_notify_cancel():
            future.set_result(ran)

    def _await_in_loop(self, awaitable: Any, event: threading.Event) -> Any:
        try:
            loop = self._event_loop()
        except RuntimeError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never to run: no "never awaited" warning
            raise
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), loop)
        while not concurrent.futures.wait([future], timeout=_POLL_SECONDS).done:
            if event.is_set():  # cancelled or timed out: stop the coroutine too
                future.cancel()
                raise concurrent.futures.CancelledError
        return future.result()

    @staticmethod
    async def _run_async(
        func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], event: threading.Event
    ) -> Ran:
        _CANCEL.set(event)  # in this task's own context
        started = time.perf_counter()
        try:
            value = await func(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # never let a tool's SystemExit stop the shared loop
            return caught(exc, started)
        return Ran(value, duration=time.perf_counter() - started)


def _start_task(loop: asyncio.AbstractEventLoop, make: Callable[[], Any], record: _Running) -> None:
    """Run the coroutine ``make()`` as a task on ``loop``, its result in ``record.future``.

    Like ``asyncio.run_coroutine_threadsafe``, but the future is the one ``record`` already holds,
    so cancelling it reaches the task even if the interrupt came before this returned.
    """
    future = record.future

    def launch() -> None:
        if future.cancelled():
            return  # stopped before it began: the coroutine is never even created
        task = loop.create_task(make())  # in the caller's context (see call_soon_threadsafe)

        def cancel_task(done: concurrent.futures.Future[Ran]) -> None:
            if done.cancelled():
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(task.cancel)

        def settle(done: asyncio.Task[Any]) -> None:
            if done.cancelled():
                future.cancel()
            elif future.set_running_or_notify_cancel():
                exc = done.exception()
                if exc is None:
                    future.set_result(done.result())
                else:
                    future.set_exception(exc)

        task.add_done_callback(settle)
        future.add_done_callback(cancel_task)  # runs at once if already cancelled

    # The callback runs in a copy of this thread's context, and the task copies that again.
    loop.call_soon_threadsafe(launch, context=contextvars.copy_context())


def _wait_for_any(records: Iterable[_Running]) -> None:
    """Until one of ``records`` finishes, its deadline comes, or it is time to look at cancel."""
    futures, wait = [], _POLL_SECONDS
    now = time.monotonic()
    for record in records:
        futures.append(record.future)
        if (deadline := record.deadline) is not None:
            wait = min(wait, max(0.0, deadline - now))
    if futures:
        concurrent.futures.wait(
            futures, timeout=wait, return_when=concurrent.futures.FIRST_COMPLETED
        )


def _outcome(record: _Running, max_result_chars: int) -> ToolOutcome:
    """The outcome of a call whose future is done."""
    call, arguments = record.prepared.call, record.prepared.arguments
    try:
        ran = record.future.result(timeout=0)
    except concurrent.futures.CancelledError:  # an async tool cancelled from inside
        return failed(call, arguments, f"{call.name} was cancelled.")
    if ran.exception is not None:
        exc = ran.exception
        message = exception_message(exc)
        error = f"{call.name} raised {type(exc).__name__}" + (f": {message}" if message else "")
        outcome = failed(call, arguments, error)
        outcome.traceback, outcome.duration = ran.traceback, ran.duration
        return outcome
    try:
        content = serialize_result(ran.value, max_result_chars)
    except Exception as exc:  # a broken __repr__, a result nested too deeply
        error = (
            f"the result of {call.name} could not be turned into text "
            f"({type(exc).__name__}: {exception_message(exc)})"
        )
        outcome = failed(call, arguments, error)
        outcome.duration, outcome.result = ran.duration, ran.value
        return outcome
    return ToolOutcome(
        call.id, call.name, arguments, content, ok=True, duration=ran.duration, result=ran.value
    )


async def _await(awaitable: Any) -> Any:
    return await awaitable
