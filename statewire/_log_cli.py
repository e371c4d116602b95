"""``statewire serve``'s logs: ``--log-level`` and ``--log-config`` (uvicorn's options).

Logs go to stderr from the level asked up (``info`` by default), each line with the time,
the logger's name and the level, and the process id where several processes share the
stream (``--workers``, ``--reload``).

``--log-config PATH`` is applied after that setup, as uvicorn applies it: a ``.json`` or
``.yaml``/``.yml`` file is a ``logging.config.dictConfig`` dictionary (YAML needs PyYAML,
and is read with ``safe_load``), any other file is read by ``logging.config.fileConfig``
with ``disable_existing_loggers`` false. statewire's own loggers stay on whatever a
dictionary's ``disable_existing_loggers`` says (some are made before the file is read,
others after), unless it configures them by name. A ``--log-level`` given beside it sets the
``statewire`` loggers' level (uvicorn's sets its own loggers'); without it, the file
decides. A file that does not apply is a one-line error, exit status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import logging.config

#: ``--log-level``'s words (uvicorn's; its ``trace`` is ``debug`` and ``--trace``, the
#: transitions logged, here)
LOG_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}


def setup(process: bool, level: str | None = None, config: str | None = None) -> None:
    """Log to stderr from ``level`` up (``None``: ``info``, or the ``config`` file's
    choice); with the process id where several processes share it (workers); then apply
    the ``config`` file (``ValueError``, one line, when it does not apply)."""
    where = " [%(process)d]" if process else ""
    logging.basicConfig(
        level=LOG_LEVELS[level or "info"],
        format=f"%(asctime)s{where} %(name)s %(levelname)s %(message)s",
    )
    if config is None:
        return
    named = _configure(config)
    for name, logger in logging.Logger.manager.loggerDict.items():
        # statewire's loggers made before the file was read (its imports') stay on, as
        # those made after it are, unless the file speaks of them
        mine = name == "statewire" or name.startswith("statewire.")
        if mine and isinstance(logger, logging.Logger) and name not in named:
            logger.disabled = False
    if level is not None:
        logging.getLogger("statewire").setLevel(LOG_LEVELS[level])


def check_config(path: str) -> None:
    """What can be told before serving: the file can be opened, and a YAML one read
    (PyYAML installed); ``ValueError`` (one line) if not."""
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise ValueError(f"--log-config: {error.strerror or error}: {path}") from None
    if path.endswith((".yaml", ".yml")) and importlib.util.find_spec("yaml") is None:
        raise ValueError(f"--log-config {path}: a YAML file needs PyYAML (pip install pyyaml)")


def _configure(path: str) -> set[str]:
    """Apply the file; the loggers it names."""
    try:
        if path.endswith((".json", ".yaml", ".yml")):
            with open(path, encoding="utf-8") as file:
                if path.endswith(".json"):
                    config = json.load(file)
                else:
                    yaml = importlib.import_module("yaml")  # (PyYAML: see check_config)
                    config = yaml.safe_load(file)
            logging.config.dictConfig(config)
            loggers = config.get("loggers") if isinstance(config, dict) else None
            return set(loggers) if isinstance(loggers, dict) else set()
        logging.config.fileConfig(path, disable_existing_loggers=False)
        return set()
    except Exception as error:  # (json's, yaml's, configparser's and logging's own errors)
        reasons: list[str] = []
        cause: BaseException | None = error
        while cause is not None and len(reasons) < 3:  # (dictConfig's says which handler)
            text = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            reasons.append(text)
            cause = cause.__cause__
        raise ValueError(f"--log-config {path}: {': '.join(reasons)}") from None
