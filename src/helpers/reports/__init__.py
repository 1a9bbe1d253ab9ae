"""The report runner: papermill execution, stakeholder HTML, an index portal and immutable run folders.

``python -m helpers.reports run`` (see :mod:`helpers.reports.runner`) renders every department report plus the
company-wide reports into ``reports/<run-id>/``. This package's top level stays light (standard library only)
because every report notebook imports :func:`write_report_summary` from it.

The runner knows nothing about statistics: notebooks compute, and hand the portal a small summary JSON.
"""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from helpers.errors import KitError, ParamsError

__all__ = ["ReportRunError", "RunEnvironmentError", "RunInterrupted", "atomic_write_bytes", "atomic_write_text",
           "console_text", "die_with_parent", "ensure_inside", "environment_fault", "safe_slug", "unique_slugs",
           "write_report_summary", "STATUS_KEYS", "EXIT_OK", "EXIT_REPORT_FAILED", "EXIT_INVALID_INPUT",
           "EXIT_ENVIRONMENT"]

STATUS_KEYS = ("on track", "at risk", "off track")

# Exit codes of ``python -m helpers.reports`` (README "Exit codes"); interrupted runs exit 128 + signal number
# (130 for SIGINT / Ctrl-C, 143 for SIGTERM), as shells do.
EXIT_OK = 0               # every report produced
EXIT_REPORT_FAILED = 1    # the run completed, one or more reports failed (each has an error page)
EXIT_INVALID_INPUT = 2    # invalid params, data or options: nothing was executed
EXIT_ENVIRONMENT = 3      # environment fault: disk full, read-only output folder, another run holds the lock


class ReportRunError(KitError):
    """The report run cannot go ahead (bad params, bad notebook, unsafe path); names the file and the fix."""


class RunEnvironmentError(Exception):
    """The machine, not the input, stopped the run (disk full, read-only output folder, output folder locked).

    Not a :class:`KitError`: nothing is wrong with the params or the data; the CLI exits with
    :data:`EXIT_ENVIRONMENT`. The message is one line naming the folder and the fix."""


class RunInterrupted(BaseException):
    """SIGINT/SIGTERM arrived during a run (raised by the runner's signal handler; a ``BaseException`` so no
    ``except Exception`` swallows it). ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# errno values that mean "the output folder cannot take our files" (not a bug in a report)
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system",
                      errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}
if hasattr(errno, "EDQUOT"):
    ENVIRONMENT_ERRNOS[errno.EDQUOT] = "disk quota exceeded"
_ENVIRONMENT_TEXT = (("No space left on device", errno.ENOSPC), ("Disk quota exceeded", getattr(errno, "EDQUOT", 0)),
                     ("Read-only file system", errno.EROFS))
_CELL_ERRNO = re.compile(r"^\[Errno (\d+)\]")


def environment_fault(exc: BaseException | None) -> tuple[int, str] | None:
    """``(errno, reason)`` when ``exc`` (or an exception it was raised from) is a disk-full / quota / read-only /
    permission fault of the file system, else None.

    Recognised: an ``OSError`` with one of those errno values; a notebook cell that failed with ``OSError:
    [Errno 28|122|30] ...`` (papermill's ``PapermillExecutionError``: the disk filled while the notebook wrote);
    DuckDB's ``IOException`` carrying the operating system's message. Never by free text elsewhere: an error
    message may quote a cell's source, which can contain anything."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            return exc.errno, ENVIRONMENT_ERRNOS[exc.errno]
        ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
        if isinstance(ename, str) and isinstance(evalue, str) and ename in ("OSError", "IOError"):
            m = _CELL_ERRNO.match(evalue)
            code = int(m.group(1)) if m else 0
            if code in (errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", -1)):
                return code, ENVIRONMENT_ERRNOS[code]
        if type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb"):
            text = str(exc)
            for marker, code in _ENVIRONMENT_TEXT:
                if code and marker in text:
                    return code, ENVIRONMENT_ERRNOS[code]
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def die_with_parent(sig: int = signal.SIGKILL, *, parent: int | None = None, on_parent_death=None,
                    interval: float = 0.5) -> None:
    """Make this process end when its parent process ends (orphans must not keep running after the runner is
    killed with SIGKILL).

    Linux: ``prctl(PR_SET_PDEATHSIG, sig)`` via ctypes (the kernel sends ``sig`` the moment the parent exits).
    Everywhere: a daemon watchdog thread that polls ``os.getppid()`` every ``interval`` seconds and, when the
    parent changed (re-parented to init or a subreaper), calls ``on_parent_death()`` if given, then sends
    ``sig`` to this process. Call it in the child right after the fork; ``parent`` is the pid the parent had
    before forking (so a parent that died in between is noticed too; default: the current parent).
    """
    parent = int(parent or os.getppid())
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - the watchdog below still works
            pass

    def watch() -> None:
        import time
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                try:
                    if on_parent_death is not None:
                        on_parent_death()
                finally:
                    os.kill(os.getpid(), sig)  # a handler for ``sig`` may clean up; then exit regardless
                    time.sleep(5)
                    os._exit(128 + int(sig))

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os.kill(os.getpid(), sig)




# what a terminal acts on: ANSI/VT escape sequences (CSI, OSC, other ESC sequences), C0 controls other than
# tab and line feed, DEL, C1 controls (U+0080-U+009F, e.g. the 8-bit CSI U+009B), and the bidirectional
# overrides/isolates that reorder what is shown (U+202A-U+202E, U+2066-U+2069)
_TERMINAL_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?"
                               r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def console_text(message: object) -> str:
    """``message`` for the terminal or a log: every terminal control sequence and character removed (a
    department name or a data value can carry ``\\x1b[2J`` or a carriage return that would rewrite what the
    operator sees); line feeds and tabs are kept."""
    return _TERMINAL_CONTROL.sub("", str(message))


def safe_slug(name: str) -> str:
    """A file-name-safe slug: lower-case ``[a-z0-9_-]``, no dots or slashes, never empty.

    Accents are folded (``"Kundendienst Süd"`` -> ``"kundendienst_sud"``), every other run of characters becomes
    one ``_``; ``"../../etc/passwd"`` -> ``"etc_passwd"``. Raises :class:`ReportRunError` when nothing usable is
    left (e.g. ``"../"``), so a department can never become a path outside the run folder.
    """
    if not isinstance(name, str):
        raise ReportRunError(f"department name {name!r}: expected a string")
    from helpers.formatting import slug as _slug  # the kit's one slug rule
    slug = _slug(name)
    if not slug:
        raise ReportRunError(f"department name {name!r} has no letters or digits to make a file name from")
    return slug


def unique_slugs(names: Iterable[str]) -> dict[str, str]:
    """``{name: slug}`` with slugs unique per run (``sales``, ``sales_2``...), in the order given."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = safe_slug(name)
        slug, k = base, 2
        while slug in used:
            slug, k = f"{base}_{k}", k + 1
        used.add(slug)
        out[name] = slug
    return out


def ensure_inside(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Return ``path`` resolved, raising :class:`ReportRunError` unless it lies inside ``root``."""
    p = Path(path).resolve()
    r = Path(root).resolve()
    if p != r and r not in p.parents:
        raise ReportRunError(f"output path {str(path)!r} would leave the run folder {str(root)!r}")
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path``, fsync, then ``os.replace`` it into place.

    Readers see either the old file or the complete new one, never a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_report_summary(path: str | os.PathLike, title: str, department: str = "",
                         status_counts: Mapping[str, int] | None = None,
                         warnings: Iterable[str] | None = None, *, headline: str = "",
                         objectives: Iterable[Mapping] = (), kpis: Iterable[Mapping] = (),
                         charts: int | None = None) -> None:
    """Write the small JSON the runner's index portal reads (badges, title, warnings); no-op when ``path`` is "".

    ``status_counts`` maps objective status to a count, e.g. ``{"on track": 4, "at risk": 1, "off track": 0}``
    (other statuses such as "achieved"/"no data" are kept too). Counts must be non-negative integers.
    Called at the end of every report notebook with the ``summary_path`` parameter. Returns None (a notebook's
    last line must not print the summary's path on the page).

    Page protocol fields (all optional, JSON-safe values): ``headline`` (one plain sentence), ``objectives``
    (one mapping per objective: ``id``, ``title``, ``owner``, ``status``, ``p_met``, ``kpi``), ``kpis`` (one
    mapping per headline KPI: ``kpi``, ``label``, ``value``, ``ci_low``, ``ci_high``, ``n``, ``period``,
    ``unit``, ``change``, ``change_significant``), ``charts`` (how many charts the page was meant to show; the
    runner fails a page that shows fewer).
    """
    if path is None or str(path) == "":
        return None
    counts: dict[str, int] = {}
    for key, value in dict(status_counts or {}).items():
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise ParamsError(path, f"status count for {key!r} is {value!r}; expected a whole number") from None
        if n != value or n < 0:
            raise ParamsError(path, f"status count for {key!r} is {value!r}; expected a whole number >= 0")
        counts[str(key)] = n
    payload = {"title": str(title), "department": str(department or ""), "status_counts": counts,
               "warnings": [str(w) for w in (warnings or [])], "headline": str(headline or ""),
               "objectives": [_json_safe(dict(o)) for o in objectives], "kpis": [_json_safe(dict(k)) for k in kpis]}
    if charts is not None:
        payload["charts"] = int(charts)
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return None


def _json_safe(value):
    """Plain JSON values: numpy numbers to Python numbers, NaN/inf to None, dates and other objects to str."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    return str(value)
