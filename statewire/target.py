"""Find what a command line names: ``path/to/file.py:name`` or ``package.module:name``."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any


class TargetError(Exception):
    """The target does not exist or is not what was asked for (a one-line message)."""


class TargetRaised(TargetError):
    """The target's own code raised while it was imported or called (a one-line message
    naming the target and the exception)."""


def call(target: str, what: str, function: Any) -> Any:
    """``function()``, an exception from it reported as :class:`TargetRaised`."""
    try:
        return function()
    except Exception as error:
        raise TargetRaised(f"{what} {target} raised {type(error).__name__}: {error}") from error


def load(target: str) -> Any:
    """The object ``target`` names."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise TargetError(f"{target!r} is not MODULE:NAME or FILE.py:NAME")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise TargetError(f"no such file: {where}")
        spec = importlib.util.spec_from_file_location(f"_statewire_target_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot import {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        # as when the file is run as a script: its own folder is importable
        sys.path.insert(0, str(path.resolve().parent))
        loader = spec.loader
        call(target, "importing", lambda: loader.exec_module(module))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as error:
            raise TargetError(f"cannot import {where}: {error}") from None
        except Exception as error:
            raise TargetRaised(
                f"importing {target} raised {type(error).__name__}: {error}"
            ) from error
    try:
        return getattr(module, name)
    except AttributeError:
        raise TargetError(f"{where} has no attribute {name!r}") from None


def factory_from(target: str) -> Any:
    """A factory from ``target``: a Factory, a Factory class or a function returning a
    Factory (called with no arguments), or a Protocol class (served by a plain ``Factory``)."""
    from statewire.protocol import Factory, Protocol

    found = load(target)
    if isinstance(found, type) and issubclass(found, Protocol):
        return Factory.forProtocol(found)
    if isinstance(found, type) and issubclass(found, Factory):
        _no_arguments(target, found)
        return call(target, "making", found)
    if isinstance(found, Factory):
        return found
    if callable(found) and not isinstance(found, type):
        _no_arguments(target, found, hint=True)
        made = call(target, "calling", found)
        if isinstance(made, Factory):
            return made
        if inspect.iscoroutine(made):  # (an ASGI application taking any arguments)
            made.close()
            raise TargetError(
                f"{target} returned a coroutine, not a Factory (an ASGI application? serve "
                "it with --asgi)"
            )
        raise TargetError(f"{target} returned {type(made).__name__}, not a Factory")
    raise TargetError(f"{target} is a {type(found).__name__}, not a Factory or a Protocol")


def asgi_factory_from(
    target: str, called: bool = False, interface: str = "auto", **options: Any
) -> Any:
    """``serve --asgi``: the ASGI 3 application ``target`` names (a Starlette or FastAPI
    instance, an ``async def app(scope, receive, send)``: what ``uvicorn MODULE:app``
    takes), or that it returns when called with no arguments (``called``: uvicorn's
    ``--factory``), served by :func:`statewire.protocols.asgi.asgi` with ``options``.

    ``interface`` is uvicorn's ``--interface``: ``auto`` and ``asgi3`` take an ASGI 3
    application; ``asgi2`` an ASGI 2 one (``app(scope)`` returns the instance that is
    called with ``(receive, send)``), served as ASGI 3; ``wsgi`` is refused."""
    from statewire.protocol import Factory, Protocol
    from statewire.protocols.asgi import asgi

    if interface == "wsgi":
        raise TargetError(
            "--interface wsgi: statewire serves ASGI applications; wrap a WSGI one in an "
            "ASGI adapter (a2wsgi's WSGIMiddleware, say) and serve that"
        )
    found = load(target)
    if called:
        if not callable(found):
            raise TargetError(f"{target} is a {type(found).__name__}, not a function (--factory)")
        _no_arguments(target, found)
        found = call(target, "calling", found)
        if inspect.iscoroutine(found):  # (an async function, or an application)
            found.close()
            raise TargetError(
                f"{target} returned a coroutine: --factory takes a plain function returning "
                "the application (an async function, or an ASGI application, is not one)"
            )
        target = f"what {target} returned"
    if isinstance(found, Factory) or (
        isinstance(found, type) and issubclass(found, (Factory, Protocol))
    ):
        raise TargetError(f"{target} is a statewire factory or protocol: serve it without --asgi")
    if not callable(found):
        raise TargetError(f"{target} is a {type(found).__name__}, not an ASGI application")
    if interface == "asgi2":
        return asgi(_asgi3(found), **options)
    if isinstance(found, type) and not hasattr(found, "__await__"):
        # (a class called with the three arguments makes an instance, not a response: an
        # ASGI 2 application, or an application's class named for its instance)
        raise TargetError(
            f"{target} is a class, not an ASGI 3 application: name an instance of it (or "
            "serve an ASGI 2 application with --interface asgi2)"
        )
    try:
        signature = inspect.signature(found)
    except ValueError:  # no signature to read (a builtin): calling it will tell
        return asgi(found, **options)
    try:
        signature.bind(None, None, None)
    except TypeError:
        hint = ""
        with contextlib.suppress(TypeError):
            signature.bind(None)
            hint = " (an ASGI 2 application? serve it with --interface asgi2)"
        if not called:
            with contextlib.suppress(TypeError):
                signature.bind()
                hint = " (a function making one? serve it with --factory)"
        raise TargetError(
            f"{target} cannot be called as (scope, receive, send): not an ASGI 3 application{hint}"
        ) from None
    return asgi(found, **options)


def _asgi3(application: Any) -> Any:
    """An ASGI 2 application as an ASGI 3 one: its instance for the scope, called."""

    async def asgi3(scope: Any, receive: Any, send: Any) -> None:
        await application(scope)(receive, send)

    return asgi3


def _no_arguments(target: str, function: Any, hint: bool = False) -> None:
    """Refuse a factory (function or class) that cannot be called with no arguments
    (``hint``: one that takes ``(scope, receive, send)`` is said to be perhaps an ASGI
    application)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no signature to read (a builtin): calling it will tell
        return
    try:
        signature.bind()
    except TypeError as error:
        asgi = ""
        if hint:
            with contextlib.suppress(TypeError):
                signature.bind(None, None, None)
                asgi = " (an ASGI application? serve it with --asgi)"
        raise TargetError(f"{target} cannot be called with no arguments: {error}{asgi}") from None
