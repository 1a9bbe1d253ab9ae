"""Safe, bounded loading of the kit's params files (``params/report.yaml``, ``params/departments/*.yaml``).

``yaml.safe_load`` already refuses arbitrary Python objects, but it still expands anchors and aliases: a 1.5 KB
"billion laughs" file (``a: &a [x, x, ...]``, ``b: &b [*a, *a, ...]``, ...) becomes a value whose text form
is gigabytes long, and an error message or a validator that looks at it runs out of memory. Params files are
short and written by hand, so this loader simply refuses what they never need:

- **anchors and aliases** (``&name``, ``*name``, and so ``<<: *name`` merges): refused at the first one, with the
  file, line and column; nothing is expanded;
- **files larger than** :data:`MAX_PARAMS_BYTES` (read at most that much, so a device or a huge file cannot
  exhaust memory);
- **nesting deeper than** :data:`MAX_PARAMS_DEPTH` levels (a file of ``[[[[...`` would otherwise overflow the
  parser's recursion).

Everything else is exactly ``yaml.safe_load`` (same types: dates, numbers, booleans, strings, lists, mappings).
Every problem raises :class:`helpers.errors.ParamsError` (or the subclass given as ``error``) naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from helpers.errors import ParamsError

__all__ = ["MAX_PARAMS_BYTES", "MAX_PARAMS_DEPTH", "load_params_yaml", "parse_params_yaml"]

MAX_PARAMS_BYTES = 1 << 20  # 1 MiB: the kit's params files are a few KB
MAX_PARAMS_DEPTH = 50


class _ParamsYAMLRefused(yaml.YAMLError):
    """A construct the params loader refuses (alias, anchor, nesting); carries the position."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _ParamsLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors/aliases and deep nesting while composing (before any expansion)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: D102 - see the class docstring
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _ParamsYAMLRefused(
                f"alias *{event.anchor[:40]} found - YAML anchors and aliases (&name, *name, <<: *name) are not "
                "allowed in params files; write each value out in full", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _ParamsYAMLRefused(
                f"anchor &{event.anchor[:40]} found - YAML anchors and aliases (&name, *name, <<: *name) are not "
                "allowed in params files; write each value out in full", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_PARAMS_DEPTH:
                raise _ParamsYAMLRefused(f"values nested more than {MAX_PARAMS_DEPTH} levels deep; params "
                                         "files need only a few levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def parse_params_yaml(text: str, path: object, *, error: type[ParamsError] = ParamsError) -> object:
    """Parse the text of a params file like ``yaml.safe_load``, refusing aliases, anchors and deep nesting.

    ``path`` is only used in messages. Raises ``error`` (a :class:`ParamsError` class) naming the file and line.
    """
    if len(text) > MAX_PARAMS_BYTES:
        raise error(path, f"the file is larger than {MAX_PARAMS_BYTES // 1024} KiB; params files are short "
                          "settings written by hand (is this the right file?)")
    loader = _ParamsLoader(text)
    try:
        return loader.get_single_data()
    except _ParamsYAMLRefused as exc:
        raise error(path, f"{_where(exc).strip().removeprefix('at ') or 'YAML'}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(path, f"malformed YAML{_where(exc)}: {str(problem)[:200]}") from None
    except RecursionError:
        raise error(path, f"values nested too deeply (more than {MAX_PARAMS_DEPTH} levels)") from None
    finally:
        loader.dispose()


def load_params_yaml(path: str | os.PathLike[str], *, error: type[ParamsError] = ParamsError) -> object:
    """Read and parse a params file: at most :data:`MAX_PARAMS_BYTES`, UTF-8, no anchors/aliases.

    Returns what ``yaml.safe_load`` would (``None`` for an empty file). Raises ``error`` naming the file.
    """
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            raw = handle.read(MAX_PARAMS_BYTES + 1)
    except OSError as exc:
        raise error(path, f"cannot read the file ({exc.strerror or exc})") from None
    if len(raw) > MAX_PARAMS_BYTES:
        raise error(path, f"the file is larger than {MAX_PARAMS_BYTES // 1024} KiB; params files are short "
                          "settings written by hand (is this the right file?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(path, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None
    return parse_params_yaml(text, path, error=error)
