"""The report runner: papermill execution, stakeholder HTML, an index portal and immutable run folders.

``python -m helpers.reports run`` (see :mod:`helpers.reports.runner`) renders every department report plus the
company-wide reports into ``reports/<run-id>/``. This package's top level stays light (standard library only)
because every report notebook imports :func:`write_report_summary` from it.

The runner knows nothing about statistics: notebooks compute, and hand the portal a small summary JSON.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

from helpers.errors import KitError, ParamsError

__all__ = ["ReportRunError", "atomic_write_bytes", "atomic_write_text", "ensure_inside", "safe_slug",
           "unique_slugs", "write_report_summary", "STATUS_KEYS"]

STATUS_KEYS = ("on track", "at risk", "off track")


class ReportRunError(KitError):
    """The report run cannot go ahead (bad params, bad notebook, unsafe path); names the file and the fix."""


_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")


def safe_slug(name: str) -> str:
    """A file-name-safe slug: lower-case ``[a-z0-9_-]``, no dots or slashes, never empty.

    Accents are folded (``"Kundendienst Süd"`` -> ``"kundendienst_sud"``), every other run of characters becomes
    one ``_``; ``"../../etc/passwd"`` -> ``"etc_passwd"``. Raises :class:`ReportRunError` when nothing usable is
    left (e.g. ``"../"``), so a department can never become a path outside the run folder.
    """
    if not isinstance(name, str):
        raise ReportRunError(f"department name {name!r}: expected a string")
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = _SLUG_BAD.sub("_", folded.replace("-", "_")).strip("_-")
    slug = re.sub(r"_+", "_", slug)[:80].strip("_")
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
                         warnings: Iterable[str] | None = None) -> Path | None:
    """Write the small JSON the runner's index portal reads (badges, title, warnings); no-op when ``path`` is "".

    ``status_counts`` maps objective status to a count, e.g. ``{"on track": 4, "at risk": 1, "off track": 0}``
    (other statuses such as "achieved"/"no data" are kept too). Counts must be non-negative integers.
    Called at the end of every report notebook with the ``summary_path`` parameter.
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
               "warnings": [str(w) for w in (warnings or [])]}
    return atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
