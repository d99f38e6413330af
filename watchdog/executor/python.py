"""``python`` mode: the function's ``handler.py`` loaded once and called in-process for every request.

No second process and no second HTTP hop. The module's own names choose the style:

- ``handle(event, context)``, as the OpenFaaS python3-http template: ``event`` has ``body`` (bytes),
  ``headers``, ``method``, ``query`` and ``path``; the return value is a body, a ``(body, status[, headers])``
  tuple, or a dict with ``statusCode``/``body``/``headers``. Bodies that are str are sent as text, bytes as
  octet-stream, anything else as JSON.
- ``handle(req)``, as the classic OpenFaaS python3 template: ``req`` is the body as text, and the return value
  is the response as above.
- ``run(x, y)``: a JSON object body is passed as keyword arguments and the return value is sent back as JSON.

``async def`` handlers run on the event loop; plain ones in a thread pool sized by ``max_inflight`` (or
:data:`DEFAULT_THREADS`). An exception in the handler is 500 with the traceback in the log, not in the body.

If ``function_path`` holds an ``__init__.py`` the directory is imported as a package (so the handler can use
relative imports, as in the OpenFaaS templates); otherwise ``handler.py`` is imported as a top-level module.
``packages_path`` (the function's own requirements, installed by the image build) is appended to ``sys.path``
after the runtime's own packages, so a function's requirements can never replace the runtime.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import importlib.util
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import structlog
from multidict import CIMultiDictProxy, MultiMapping

from servicekit.client_side import Answer, ClientRequest, Reply
from servicekit.headers import DURATION, duration_header
from watchdog.config import WatchdogConfig
from watchdog.errors import BadRequestError, FunctionError, FunctionTimeoutError, StartupError
from watchdog.imports import missing_modules

log = structlog.get_logger("watchdog.python")

HANDLER_FILE = "handler.py"
DEFAULT_THREADS = 16
RELOAD_POLL_S = 0.25  # how often function_reload looks at the function's files
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
BINARY = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Event:
    """One request, as the handler sees it (python3-http template compatible)."""

    body: bytes
    headers: CIMultiDictProxy[str]
    method: str
    query: MultiMapping[str]
    path: str


@dataclass(frozen=True, slots=True)
class Context:
    hostname: str
    call_id: str


@dataclass(frozen=True, slots=True)
class Handler:
    function: Callable[..., Any]
    style: Literal["event", "text", "kwargs"]
    is_async: bool
    signature: inspect.Signature


_loaded: dict[str, Handler] = {}


def load_handler(config: WatchdogConfig) -> Handler:
    """Import the function's handler once per process (a fork inherits it); StartupError if it cannot."""
    directory = Path(config.function_path).resolve()
    key = str(directory)
    if key in _loaded:
        return _loaded[key]
    source = directory / HANDLER_FILE
    if not source.is_file():
        raise StartupError(f"function_path: no {HANDLER_FILE} in {directory}")
    for entry in (str(directory), config.packages_path):
        if entry not in sys.path:
            sys.path.append(entry)
    missing = missing_modules(directory)
    if missing:
        raise StartupError(
            f"{source}: imports modules that are not installed: {', '.join(missing)} (add them to requirements.txt)"
        )
    try:
        module = _import(directory, source)
    except Exception as exc:
        log.exception("handler_import_failed", path=str(source))
        raise StartupError(f"{source} failed to import: {exc!r}") from exc
    for name, style in (("handle", "event"), ("run", "kwargs")):
        function = getattr(module, name, None)
        if function is None:
            continue
        if not callable(function):
            raise StartupError(f"{source}: {name} is not a function")
        signature = inspect.signature(function)
        if style == "event" and _positional(signature) == 1:
            style = "text"  # handle(req): the classic python3 template
        handler = Handler(
            function=function,
            style=style,  # type: ignore[arg-type]
            is_async=inspect.iscoroutinefunction(function),
            signature=signature,
        )
        _loaded[key] = handler
        log.info("handler_loaded", path=str(source), style=style, is_async=handler.is_async)
        return handler
    raise StartupError(f"{source} defines neither handle(event, context) nor run(...)")


def _import(directory: Path, source: Path) -> ModuleType:
    """Import ``source`` by its path, as ``<dir>.handler`` when the directory is a package, else ``handler``."""
    if (directory / "__init__.py").is_file():
        package = directory.name
        spec = importlib.util.spec_from_file_location(
            package, directory / "__init__.py", submodule_search_locations=[str(directory)]
        )
        name = f"{package}.handler"
        sys.modules.pop(name, None)
    else:
        package, name = "", "handler"
        spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(name) if package else module


def reload_handler(config: WatchdogConfig) -> Handler:
    """Import the handler again, with every module of the function's directory, after its files changed."""
    directory = Path(config.function_path).resolve()
    _loaded.pop(str(directory), None)
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if origin and Path(origin).resolve().is_relative_to(directory):
            del sys.modules[name]
    importlib.invalidate_caches()
    return load_handler(config)


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Each file's (mtime, size) under ``directory``, caches left out: a change between two is an edit."""
    files: dict[str, tuple[int, int]] = {}
    for path in directory.rglob("*"):
        if "__pycache__" in path.parts:
            continue
        try:
            stat = path.stat()
        except OSError:
            continue
        if path.is_file():
            files[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return files


class PythonExecutor:
    def __init__(self, config: WatchdogConfig) -> None:
        self._config = config
        # function_reload: the files as they were before loading, so an edit made at any time after is a change
        # (a baseline taken later could already hold it).
        self._loaded_files = snapshot(Path(config.function_path)) if config.function_reload else {}
        self._handler = load_handler(config)
        self._pool: ThreadPoolExecutor | None = None
        self._hostname = os.environ.get("HOSTNAME", "localhost")
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        threads = self._config.max_inflight or DEFAULT_THREADS
        if not self._handler.is_async or self._config.function_reload:  # a reloaded handler may be sync
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="handler")
        if self._config.function_reload:
            self._watcher = asyncio.create_task(self._watch(self._loaded_files), name="function reload")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _watch(self, seen: dict[str, tuple[int, int]]) -> None:
        """``function_reload``: poll the function's files; on an edit, load the handler anew (pyfaasd dev).

        A version that does not load is logged and the last good one keeps serving.
        """
        directory = Path(self._config.function_path)
        while True:
            await asyncio.sleep(RELOAD_POLL_S)
            now = await asyncio.to_thread(snapshot, directory)
            if now == seen:
                continue
            seen = now
            try:
                self._handler = await asyncio.to_thread(reload_handler, self._config)
            except Exception as exc:  # whatever the new code does, the watcher and the last good handler live on
                log.error("handler_reload_failed", error=str(exc), error_type=type(exc).__name__)
                continue
            log.info("handler_reloaded", path=str(directory), style=self._handler.style)

    lean = True

    async def invoke(self, request: ClientRequest, timeout_s: float | None, reply: Reply) -> None:
        started = time.perf_counter()
        body = await request.read()
        if self._handler.style == "event":
            event = Event(body, request.headers, request.method, request.query, request.path)
            context = Context(self._hostname, request.headers.get("X-Call-Id", ""))
            result = await self._call(timeout_s, event, context)
            response = event_response(result)
        elif self._handler.style == "text":
            result = await self._call(timeout_s, body.decode(errors="replace"))
            response = event_response(result)
        else:
            kwargs = run_arguments(body, self._handler.signature)
            result = await self._call(timeout_s, **kwargs)
            response = Answer(body=_json(result))
            response.headers["Content-Type"] = JSON
        response.headers[DURATION] = duration_header(started)
        reply.send(response)

    async def _call(self, timeout_s: float | None, *args: Any, **kwargs: Any) -> Any:
        function = self._handler.function
        try:
            async with asyncio.timeout(timeout_s):
                if self._handler.is_async:
                    return await function(*args, **kwargs)
                context = contextvars.copy_context()
                return await asyncio.get_running_loop().run_in_executor(
                    self._pool, lambda: context.run(function, *args, **kwargs)
                )
        except TimeoutError:
            if not self._handler.is_async:
                log.warning("handler_still_running", timeout_s=timeout_s)
            raise FunctionTimeoutError(f"the function did not finish within {timeout_s:g}s") from None
        except Exception:
            log.exception("handler_raised")
            raise FunctionError("the function raised an exception; its traceback is in the function's log") from None


def _positional(signature: inspect.Signature) -> int:
    """How many positional parameters a function takes (``*args`` counts as many)."""
    kinds = [p.kind for p in signature.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return 2
    return sum(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in kinds)


def run_arguments(body: bytes, signature: inspect.Signature) -> dict[str, Any]:
    """The keyword arguments for ``run`` from a JSON object body; BadRequestError naming what is wrong."""
    if not body.strip():
        arguments: Any = {}
    else:
        try:
            arguments = json.loads(body)
        except ValueError as exc:
            raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise BadRequestError(f"the body must be a JSON object of the arguments of run{signature}")
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        raise BadRequestError(f"the arguments do not fit run{signature}: {exc}") from None
    return arguments


def event_response(result: Any) -> Answer:
    """A handle() return value as a response: body, (body, status[, headers]) or {statusCode, body, headers}."""
    status: Any = 200
    headers: Any = None
    body = result
    if isinstance(result, tuple):
        if not 2 <= len(result) <= 3:
            raise FunctionError(f"handle() returned a tuple of {len(result)}; use (body, status[, headers])")
        body, status, *rest = result
        headers = rest[0] if rest else None
    elif isinstance(result, dict) and "statusCode" in result:
        status, body, headers = result["statusCode"], result.get("body"), result.get("headers")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise FunctionError(f"handle() returned the status {status!r}; it must be a number from 100 to 599")
    if headers is not None and not isinstance(headers, Mapping):
        raise FunctionError("handle() returned headers that are not a mapping of names to values")
    data, content_type = _body(body)
    response = Answer(status, data)
    if content_type is not None:
        response.headers["Content-Type"] = content_type
    for name, value in (headers or {}).items():
        response.headers[str(name)] = str(value)
    return response


def _body(body: Any) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body), BINARY
    if isinstance(body, str):
        return body.encode(), TEXT
    return _json(body), JSON


def _json(value: Any) -> bytes:
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError) as exc:
        raise FunctionError(f"the function returned a value that is not JSON: {exc}") from None
