"""Where a command's log and the model libraries' chatter go.

Loading a model draws progress bars ("Loading weights", the default model's one-time
conversion), and transformers, huggingface_hub and torch print notices and warnings on stderr.
Mixed into a command's own progress bar and results they bury what matters, and in a CI log a
bar is a long run of carriage-return fragments. So for the length of a command, warnings and
log records (the workbench's own from INFO up, the libraries' from WARNING up) are written to a
log file under the storage folder (`<storage>/logs/workbench.log`), and those libraries draw no
progress bars. `--verbose` (or `WORKBENCH_VERBOSE=1`) leaves the libraries printing as they
always did, and shows records from WARNING up on stderr too.

Errors do not depend on any of this: the CLI prints them itself as one `error: …` line; the log
file keeps them too, with the traceback of an unexpected one.

Everything is undone when the command ends, so a process that runs several commands (the tests
call the CLI in-process) finds logging, warnings and the libraries' settings as they were.
"""

from __future__ import annotations

import importlib.abc
import logging
import shlex
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import ModuleType

from .errors import WorkbenchError

LOG_FILE = Path("logs") / "workbench.log"
MAX_BYTES = 2_000_000  # then workbench.log.1, .2: a local tool's log should not grow for ever
BACKUPS = 2
FILE_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
STDERR_FORMAT = "%(levelname)s %(name)s: %(message)s"
# The libraries that install a handler of their own on stderr when first imported.
CHATTY_LIBRARIES = ("transformers", "huggingface_hub")

log = logging.getLogger("workbench")
command_log = logging.getLogger("workbench.command")  # the command line and how it ended


def log_file(storage_dir: Path) -> Path:
    """The log of every command that uses this storage folder."""
    return storage_dir / LOG_FILE


@dataclass
class _Quiet:
    """The running command's undo list, while library chatter goes to the file."""

    undo: ExitStack
    routed: set[str]


_quiet: _Quiet | None = None


@contextmanager
def command_logging(
    path: Path,
    *,
    verbose: bool,
    command: Sequence[str] = (),
    not_errors: tuple[type[BaseException], ...] = (),
) -> Iterator[None]:
    """Route logging and warnings to `path` for the length of one command.

    The file gets the command line, the workbench's own records from INFO up, everything else
    from WARNING up, and the command's error. Without `verbose`, Python warnings are logged
    instead of printed, huggingface_hub's (and so transformers') progress bars are off and the
    libraries stop printing their own records — those already imported at once, the others the
    moment something imports them (a cached answer never imports transformers). With `verbose`
    the libraries print as they always did, and records from WARNING up are shown on stderr as
    well. When the file cannot be opened the command runs as if verbose: better than losing the
    chatter.

    The error that ends a command is logged but never shown a second time: the CLI prints it
    itself as one line. Exceptions that are control flow (`not_errors`, e.g. an exit status) are
    not errors.
    """
    global _quiet
    with ExitStack() as undo:
        root = logging.getLogger()
        handler = _file_handler(path)
        if handler is None:
            verbose = True
        else:
            _attach(undo, root, handler)
        _lower_level(undo, log, logging.INFO)
        if verbose:
            stderr = _CurrentStderr(logging.WARNING)
            stderr.setFormatter(logging.Formatter(STDERR_FORMAT))
            stderr.addFilter(lambda record: record.name != command_log.name)
            _attach(undo, root, stderr)
        else:
            _warnings_to_log(undo)
            _hub_progress_bars_off(undo)
            undo.callback(_forget_quiet)
            _quiet = _Quiet(undo, set())
            for name in CHATTY_LIBRARIES:
                if name in sys.modules:
                    _route(name)
            finder = _RouteWhenImported()
            sys.meta_path.insert(0, finder)
            undo.callback(sys.meta_path.remove, finder)
        command_log.info("workbench %s", shlex.join(command))
        try:
            yield
        except not_errors:
            raise
        except WorkbenchError as exc:
            command_log.error("error: %s", exc)
            raise
        except Exception:
            command_log.exception("unexpected error")
            raise
        except KeyboardInterrupt:
            command_log.info("interrupted")
            raise


class _RouteWhenImported(importlib.abc.MetaPathFinder):
    """Routes a chatty library the moment it is imported, whoever imports it.

    transformers puts its own stderr handler in place when it is first imported, and importing
    it only to configure it would cost every command half a second — a cached answer never needs
    it. So this finder waits on the import system: when the library is imported, the real
    loader runs and its logger is routed at once, before it can print anything of interest.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in CHATTY_LIBRARIES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ThenRoute(spec.loader, fullname)
                return spec
        return None


class _ThenRoute(importlib.abc.Loader):
    """A library's own loader, followed by routing its logger (see `_RouteWhenImported`)."""

    def __init__(self, loader: importlib.abc.Loader, library: str) -> None:
        self._loader, self._library = loader, library

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        if _quiet is not None:
            _route(self._library)

    def __getattr__(self, name: str) -> object:  # resource readers and the like
        return getattr(self._loader, name)


def _route(name: str) -> None:
    """Detach a library's own stderr handler; its records reach the log file through the root."""
    assert _quiet is not None
    if name in _quiet.routed:
        return
    _quiet.routed.add(name)
    if name == "transformers":  # its own switch for the "Loading weights" bars
        import transformers.utils.logging as transformers_logging

        if transformers_logging.is_progress_bar_enabled():
            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            _quiet.undo.callback(transformers_logging.enable_progress_bar)
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:  # a library default; never a file handler
            logger.removeHandler(handler)
            _quiet.undo.callback(logger.addHandler, handler)
    if not logger.propagate:
        logger.propagate = True
        _quiet.undo.callback(setattr, logger, "propagate", False)


def _forget_quiet() -> None:
    global _quiet
    _quiet = None


def _file_handler(path: Path) -> logging.Handler | None:
    """A size-capped log file, or None when it cannot be written.

    Opened now rather than at the first record, so a permission problem falls back to the
    terminal instead of a logging traceback in the middle of a command. Several processes may
    append to the same file; a rotation by one of them at worst leaves the other writing to the
    renamed file until its command ends.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    return handler


def _lower_level(undo: ExitStack, logger: logging.Logger, level: int) -> None:
    if logger.getEffectiveLevel() > level:
        undo.callback(logger.setLevel, logger.level)
        logger.setLevel(level)


def _attach(undo: ExitStack, logger: logging.Logger, handler: logging.Handler) -> None:
    logger.addHandler(handler)
    undo.callback(handler.close)
    undo.callback(logger.removeHandler, handler)


def _warnings_to_log(undo: ExitStack) -> None:
    """`warnings.warn` (torch, transformers' deprecations) becomes a record on `py.warnings`.

    `catch_warnings` restores `showwarning` and the filters however `captureWarnings` left them.
    """
    undo.enter_context(warnings.catch_warnings())
    logging.captureWarnings(True)
    undo.callback(logging.captureWarnings, False)


def _hub_progress_bars_off(undo: ExitStack) -> None:
    """huggingface_hub's switch is also the one transformers reads when it is imported."""
    from huggingface_hub.utils.tqdm import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if not are_progress_bars_disabled():
        disable_progress_bars()
        undo.callback(enable_progress_bars)


class _CurrentStderr(logging.Handler):
    """Writes to whatever `sys.stderr` is when a record arrives.

    A progress bar on the terminal wraps `sys.stderr` while it is drawn, so a record written
    through it lands above the bar instead of inside it.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)
