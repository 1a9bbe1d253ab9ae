"""Text that reaches a stakeholder page: escaping for Markdown and HTML, and shortened values for messages.

Every piece of text that comes from params (objective titles, owner names, notes) or from data (segment values,
team names, customer comments) and is put into a Markdown string must go through :func:`md_escape`, and into an
HTML string through :func:`html_escape`. :func:`md_escape` makes the text inert in both languages: after it, the
text renders as exactly the characters it had, never as a link, an image, emphasis, a heading or raw HTML.

:func:`shorten` is for error messages: a value from a file is shown at most ``limit`` characters long.
"""
from __future__ import annotations

import html
import re
import reprlib

__all__ = ["chart_text", "html_escape", "md_escape", "shorten"]

# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that can start or form Markdown
# syntax (links, images, emphasis, code, headings, lists, tables, math); the HTML-special characters (& < > " ')
# become entities instead (a blockquote's ">" too: "&gt;" starts no block).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$:])")
_WHITESPACE_RUN = re.compile(r"\s+")


def html_escape(text: object) -> str:
    """HTML-escape any free text (``&``, ``<``, ``>``, quotes); ``None`` -> ``""``."""
    return html.escape("" if text is None else str(text), quote=True)


def md_escape(text: object) -> str:
    """Free text made inert for Markdown *and* HTML, on one line.

    HTML-special characters become entities (so ``<img src=...>`` stays text), every Markdown punctuation
    character gets a backslash (so ``[click](javascript:alert(1))`` and ``![x](http://host/x.png)`` stay text,
    ``*`` is no emphasis, ``#`` no heading, ``$`` no math), and line breaks become spaces (so a value cannot
    start a new block). ``None`` -> ``""``.
    """
    if text is None:
        return ""
    one_line = _WHITESPACE_RUN.sub(" ", str(text)).strip()
    # backslashes first, entities second: an entity the escaping produces (``&#x27;`` for ``'``) stays whole,
    # and ``<``, ``>``, ``&`` and quotes are handled by the entities alone (a ``\\`` before ``&gt;`` would show)
    return html.escape(_MD_SPECIAL.sub(r"\\\1", one_line), quote=True)


def chart_text(text: object) -> str:
    """Free text for a matplotlib title, label or annotation, shown as written: every ``$`` is escaped, so a
    title like ``Cut $x^$ cost`` neither starts mathtext (unbalanced, it raises while the PNG is saved) nor
    turns ``$5 and $10`` into italic math. ``None`` -> ``""``."""
    return "" if text is None else str(text).replace("$", r"\$")


def shorten(value: object, limit: int = 80) -> str:
    """``repr``-like display of a value for an error message, at most ``limit`` characters.

    Containers are never expanded in full (a YAML alias bomb stays one short line): :mod:`reprlib` shows at
    most 3 levels and the first 6 items of each (``[[1, 2, ...], ...]``), and the result is cut to ``limit``.
    """
    if isinstance(value, str):
        shown = repr(value[: limit + 1])
    else:
        try:
            shown = _BOUNDED_REPR.repr(value)
        except Exception:  # noqa: BLE001 - a value whose repr fails still gets a message
            shown = f"<{type(value).__name__}>"
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel = 3
_BOUNDED_REPR.maxlist = _BOUNDED_REPR.maxtuple = _BOUNDED_REPR.maxset = _BOUNDED_REPR.maxfrozenset = 6
_BOUNDED_REPR.maxdeque = _BOUNDED_REPR.maxarray = 6
_BOUNDED_REPR.maxdict = 4
_BOUNDED_REPR.maxstring = _BOUNDED_REPR.maxother = 60
_BOUNDED_REPR.maxlong = 40
