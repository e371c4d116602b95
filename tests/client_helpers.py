"""Helpers of the declared clients' tests (RESP and memcached)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(filename: str, name: str) -> ModuleType:
    """``examples/<filename>`` imported as module ``name`` (its servers, in this process)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``body()`` on a fresh loop, bounded to 30 seconds."""

    async def bounded() -> Any:
        return await asyncio.wait_for(body(), 30)

    return asyncio.run(bounded())


class Sink:
    """A request the model's application made: it takes any reply."""

    def done(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        pass

    def set_exception(self, error: BaseException) -> None:
        pass
