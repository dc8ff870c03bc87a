"""The local cloud's logging: ``logs/localcloud.log`` for the local cloud, moto and werkzeug, warnings on stderr;
installed when a LocalCloud starts and taken back, with the loggers' previous levels, when it stops."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest swaps it)."""

    def __init__(self, level: int):
        super().__init__()
        self.setLevel(level)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class CloudLogging:
    """The handlers one LocalCloud adds to the "localcloud", "moto" and "werkzeug" loggers."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self._handlers: list[logging.Handler] = []
        self._saved_state: dict[str, tuple] = {}

    def install(self) -> None:
        file_handler = logging.FileHandler(self.log_dir / "localcloud.log", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"))
        file_handler._localcloud = True  # type: ignore[attr-defined]
        console = _StderrHandler(logging.WARNING)
        console.setFormatter(logging.Formatter("localcloud %(levelname)s: %(message)s"))
        console._localcloud = True  # type: ignore[attr-defined]
        self._handlers = [file_handler, console]
        for name in ("localcloud", "moto", "werkzeug"):
            logger = logging.getLogger(name)
            self._saved_state[name] = (logger.level, logger.propagate)
            logger.propagate = False
            logger.addHandler(file_handler)
            if name == "localcloud":
                logger.addHandler(console)
                # Every request line at DEBUG costs the gateway measurable time under load: opt in.
                logger.setLevel(logging.DEBUG if os.environ.get("LOCALCLOUD_DEBUG") else logging.INFO)
            elif logger.level == logging.NOTSET:
                logger.setLevel(logging.INFO)

    def restore(self) -> None:
        for name, (level, propagate) in self._saved_state.items():
            logger = logging.getLogger(name)
            for handler in self._handlers:
                logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        for handler in self._handlers:
            handler.close()
        self._handlers = []
        self._saved_state = {}
