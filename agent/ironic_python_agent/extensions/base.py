# SPDX-License-Identifier: Apache-2.0
"""Command extensions: decorators, results, the registry and the executor.

A command is a method of a :class:`BaseAgentExtension` subclass marked with
:func:`sync_command` (runs inside the request) or :func:`async_command` (runs
in a worker thread; the request answers RUNNING at once). The names and
behaviour match upstream's ``extensions/base.py`` so third-party extensions
load unchanged.
"""

from __future__ import annotations

import collections
import enum
import functools
import importlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from ironic_python_agent import errors

LOG = logging.getLogger(__name__)

# Built-in extensions, imported lazily by name; third-party ones come from the
# entry-point group below and may replace a built-in of the same name.
BUILTIN_EXTENSIONS = {
    name: f"ironic_python_agent.extensions.{name}"
    for name in ("clean", "deploy", "image", "log", "poll", "rescue", "service",
                 "standby", "system")
}
ENTRY_POINT_GROUP = "ironic_python_agent.extensions"

# A finished command's record keeps only its wire form; any single string or bytes
# value longer than this is replaced by a note. The history keeps at most
# HISTORY_COUNT records and HISTORY_BYTES of them (oldest finished ones go first).
RECORD_VALUE_LIMIT = 64 * 1024
HISTORY_COUNT = 100
HISTORY_BYTES = 16 * 1024 * 1024


class AgentCommandStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    # Kept as the text Ironic has always matched, whatever the step type.
    VERSION_MISMATCH = "CLEAN_VERSION_MISMATCH"
    CLEAN_VERSION_MISMATCH = "CLEAN_VERSION_MISMATCH"

    def __str__(self) -> str:
        return self.value


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    """The wire form of any exception: agent errors as they are, others wrapped."""
    if isinstance(exc, errors.RESTError):
        return exc.serialize()
    if isinstance(exc, TypeError):
        # Ironic looks for type == "TypeError" to detect unsupported arguments.
        return {"type": "TypeError", "code": 400, "message": "Invalid command parameters",
                "details": str(exc)}
    return errors.CommandExecutionError(str(exc) or type(exc).__name__).serialize()


def shrink(value: Any, limit: int = RECORD_VALUE_LIMIT) -> Any:
    """*value* with every string or bytes value over *limit* replaced by a short note."""
    if isinstance(value, (str, bytes, bytearray)):
        if len(value) > limit:
            return f"<{len(value)} {'characters' if isinstance(value, str) else 'bytes'} " \
                   "dropped from the command record>"
        return value
    if isinstance(value, dict):
        return {k: shrink(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shrink(v, limit) for v in value]
    return value


class RecordedError(errors.RESTError):
    """A finished command's error as it went on the wire: no traceback, no frames."""

    def __init__(self, wire: dict[str, Any]) -> None:
        Exception.__init__(self, f"{wire.get('message')}: {wire.get('details')}")
        self.wire = wire
        self.details = wire.get("details")
        self.message = str(wire.get("message"))
        self.status_code = int(wire.get("code") or 500)

    @property
    def type(self) -> str:
        return str(self.wire.get("type"))

    def serialize(self) -> dict[str, Any]:
        return self.wire


def _drop_tracebacks(exc: BaseException) -> None:
    """Forget the frames (and so the locals) *exc* and its chained exceptions hold."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        todo.extend((current.__cause__, current.__context__))


class BaseCommandResult:
    """One entry of the command history. Only ``serializable_fields`` go on the wire."""

    serializable_fields = ("id", "command_name", "command_status", "command_error",
                           "command_result")

    def __init__(self, command_name: str, command_params: dict[str, Any]) -> None:
        self.id = str(uuid.uuid4())
        self.command_name = command_name
        self.command_params = command_params
        self.command_status = AgentCommandStatus.RUNNING
        self.command_error: BaseException | None = None
        self.command_result: Any = None
        self.record_bytes = 0
        self.trimmed = False

    def trim(self) -> None:
        """Once done, keep only what ``GET /v1/commands/`` returns, large values dropped.

        The parameters (a configdrive, a node), the exception with its traceback and
        frames, and any huge result would otherwise stay for the life of the agent.
        """
        if not self.is_done() or self.trimmed:
            return
        self.command_params = {}
        err = self.command_error
        if err is not None and not isinstance(err, RecordedError):
            wire = error_to_dict(err)
            small = shrink(wire)
            if isinstance(err, errors.RESTError) and small == wire:
                _drop_tracebacks(err)  # keeps its class for in-process callers
            else:
                self.command_error = RecordedError(small)
        self.command_result = shrink(self.command_result)
        self.record_bytes = len(json.dumps(self.serialize(), default=str))
        self.trimmed = True

    def serialize(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command_name": self.command_name,
            "command_status": str(self.command_status.value),
            "command_error": (None if self.command_error is None
                              else error_to_dict(self.command_error)),
            "command_result": self.command_result,
        }

    def is_done(self) -> bool:
        return self.command_status != AgentCommandStatus.RUNNING

    def join(self, timeout: float | None = None) -> BaseCommandResult:
        return self

    def wait(self) -> BaseCommandResult:
        return self.join()

    def _finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if error is not None:
            self.command_error = error
            self.command_status = (AgentCommandStatus.VERSION_MISMATCH
                                   if isinstance(error, errors.VersionMismatch)
                                   else AgentCommandStatus.FAILED)
        else:
            self.command_result = result
            self.command_status = AgentCommandStatus.SUCCEEDED


class SyncCommandResult(BaseCommandResult):
    def __init__(self, command_name: str, command_params: dict[str, Any],
                 success: bool, result_or_error: Any) -> None:
        super().__init__(command_name, command_params)
        if success:
            if isinstance(result_or_error, str):
                result_or_error = {"result": result_or_error}
            self._finish(result=result_or_error)
        else:
            self._finish(error=result_or_error)


class AsyncCommandResult(BaseCommandResult):
    """Runs *execute_method* in a thread named ``agent-command-<id>``."""

    def __init__(self, command_name: str, command_params: dict[str, Any],
                 execute_method: Callable[..., Any], agent: Any = None) -> None:
        super().__init__(command_name, command_params)
        self._execute = execute_method
        self._agent = agent
        self._thread = threading.Thread(target=self._run, name=f"agent-command-{self.id}",
                                        daemon=True)

    def start(self) -> AsyncCommandResult:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> AsyncCommandResult:
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(timeout)
        return self

    def _run(self) -> None:
        try:
            result = self._execute(**self.command_params)
            if isinstance(result, str):
                result = {"result": f"{self.command_name}: {result}"}
            self._finish(result=result)
        except BaseException as exc:  # noqa: BLE001 - every failure must be reported
            if not isinstance(exc, errors.RESTError):
                LOG.exception("Command %s failed", self.command_name)
            else:
                LOG.error("Command %s failed: %s", self.command_name, exc)
            self._finish(error=exc)
        finally:
            self.trim()
            force = getattr(self._agent, "force_heartbeat", None)
            if force is not None:
                force()


def sync_command(command_name: str, validator: Callable[..., None] | None = None
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method as a command that runs inside the request."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(self: Any, **params: Any) -> SyncCommandResult:
            if validator is not None:
                validator(self, **params)
            result = func(self, **params)
            return SyncCommandResult(command_name, params, True, result)

        wrapper.command_name = command_name  # type: ignore[attr-defined]
        return wrapper

    return wrap


def async_command(command_name: str, validator: Callable[..., None] | None = None
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method as a command that runs in a worker thread.

    The validator runs synchronously, so bad parameters are a 400 answer.
    """

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(self: Any, **params: Any) -> AsyncCommandResult:
            if validator is not None:
                validator(self, **params)
            bound = functools.partial(func, self)
            return AsyncCommandResult(command_name, params, bound,
                                      agent=getattr(self, "agent", None)).start()

        wrapper.command_name = command_name  # type: ignore[attr-defined]
        return wrapper

    return wrap


class BaseAgentExtension:
    """A command namespace. Commands are found by their ``command_name`` mark."""

    def __init__(self, agent: Any = None) -> None:
        self.agent = agent
        self.command_map: dict[str, Callable[..., BaseCommandResult]] = {}
        for attr in dir(type(self)):
            method = getattr(self, attr, None)
            name = getattr(method, "command_name", None)
            if name is not None and callable(method):
                self.command_map[name] = method

    def execute(self, command_name: str, **kwargs: Any) -> BaseCommandResult:
        cmd = self.command_map.get(command_name)
        if cmd is None:
            raise errors.InvalidCommandError(f"Unknown command: {command_name}")
        return cmd(**kwargs)

    def check_cmd_presence(self, ext_obj: BaseAgentExtension, ext: str, cmd: str) -> None:
        if not (hasattr(ext_obj, "execute") and hasattr(ext_obj, "command_map")
                and cmd in ext_obj.command_map):
            raise errors.InvalidCommandParamsError(f"Extension {ext} doesn't provide {cmd} method")


# --- the registry -----------------------------------------------------------

_EXTENSIONS: dict[str, BaseAgentExtension] | None = None


def load_extensions(agent: Any = None) -> dict[str, BaseAgentExtension]:
    """Instantiate every extension (built-in and from entry points) for *agent*."""
    from importlib.metadata import entry_points

    factories: dict[str, Callable[..., BaseAgentExtension]] = {}
    for name, module in BUILTIN_EXTENSIONS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue  # a namespace not built into this agent
        factories[name] = getattr(mod, "EXTENSION")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factories[ep.name] = ep.load()
        except Exception:  # noqa: BLE001 - one broken plugin must not stop the agent
            LOG.exception("Cannot load extension %s from %s", ep.name, ep.value)
    return {name: factory(agent=agent) for name, factory in factories.items()}


def init_ext_manager(agent: Any = None) -> dict[str, BaseAgentExtension]:
    global _EXTENSIONS
    _EXTENSIONS = load_extensions(agent)
    return _EXTENSIONS


def get_extension(name: str) -> BaseAgentExtension:
    if _EXTENSIONS is None:
        raise errors.ExtensionError("Extensions are not loaded yet")
    try:
        return _EXTENSIONS[name]
    except KeyError:
        raise errors.RequestedObjectNotFoundError("Extension", name) from None


def split_command(command_name: str) -> tuple[str, str]:
    ext, sep, cmd = command_name.partition(".")
    if not sep or not ext or not cmd:
        raise errors.InvalidCommandError(
            "Command name must be of the form <extension>.<name>")
    return ext, cmd


class ExecuteCommandMixin:
    """The command executor: one command at a time, history kept in order."""

    def __init__(self) -> None:
        self.command_lock = threading.Lock()
        self.command_results: collections.OrderedDict[str, BaseCommandResult] = (
            collections.OrderedDict())

    def get_extension(self, extension_name: str) -> BaseAgentExtension:
        return get_extension(extension_name)

    def execute_command(self, command_name: str, **kwargs: Any) -> BaseCommandResult:
        with self.command_lock:
            ext_name, cmd = split_command(command_name)
            if self.command_results:
                last = next(reversed(self.command_results.values()))
                if not last.is_done():
                    raise errors.AgentIsBusy(last.command_name)
            ext = self.get_extension(ext_name)
            try:
                result = ext.execute(cmd, **kwargs)
            except errors.InvalidContentError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as a FAILED result
                LOG.error("Command %s failed: %s", command_name, exc)
                result = SyncCommandResult(command_name, kwargs, False, exc)
            self.command_results[result.id] = result
            self._prune_history()
            return result

    def _prune_history(self) -> None:
        """Drop the oldest finished records beyond HISTORY_COUNT or HISTORY_BYTES."""
        records = self.command_results
        total = sum(r.record_bytes for r in records.values())
        for key in list(records):
            if len(records) <= HISTORY_COUNT and total <= HISTORY_BYTES:
                return
            record = records[key]
            if record.is_done() and key != next(reversed(records)):
                record.trim()
                total -= record.record_bytes
                del records[key]
