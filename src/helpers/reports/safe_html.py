"""Last line of defence for a stakeholder page: no script URL, no external link or image, whatever the input.

Free text from params and data is escaped where it is put into Markdown or HTML (``helpers.formatting``), and
the page carries a Content-Security-Policy. This module makes the finished HTML safe on its own, so that a
missed escape somewhere (a new summary sentence, a chart label) can never become a live ``javascript:`` link
or an ``<img>`` that calls a remote host when the file is opened, e-mailed or viewed without the CSP:

- ``href`` survives only as a same-document anchor (``#...``) or, on ``<a>``/``<area>``, as a relative path
  inside the run folder or a sibling run of the same output folder (no scheme, no leading ``/`` or ``\\``, at
  most one level up): the links between a run's pages and the index's link to the previous run;
- ``src`` survives only on ``<img>`` and only as an embedded image (``data:image/png|jpeg|gif|webp;base64,``
  or ``data:image/svg+xml``); every other URL-bearing attribute (``srcset``, ``action``, ``formaction``,
  ``poster``, ``xlink:href``, ``srcdoc``, ...) is removed unless it is a ``#`` anchor, as are ``on*`` event
  handlers, a ``<meta http-equiv=refresh>`` target and CSS ``url()``/``@import`` in ``style`` attributes or
  ``<style>`` elements;
- in every attribute that remains (ids, alt text, titles), a ``javascript:``/``vbscript:``/``livescript:``
  scheme is defused by replacing its colon with U+2236 (RATIO) - anchors and the ids they point at change the
  same way, so the table of contents still works.

Only the offending start tags and style texts are rewritten (spliced at their positions found by the stdlib
:class:`html.parser.HTMLParser`); the rest of the page, embedded images included, is kept byte for byte.
Browsers end a comment at ``--!>`` where the stdlib parser does not, so that sequence is made ``-->`` first.
"""
from __future__ import annotations

import html
import posixpath
import re
from html.parser import HTMLParser
from urllib.parse import unquote

__all__ = ["sanitize_html", "is_safe_href", "is_embedded_image"]

_CONTROL = re.compile(r"[\x00-\x20\x7f]+")
# a script scheme as a browser reads it: any case, spaces and control characters anywhere (tabs and line breaks
# are dropped from URLs); searched in the value as it is, so a megabyte of base64 image costs one scan, no copy
_SCRIPT_SCHEME = re.compile("(?:" + "|".join("[\x00-\x20\x7f]*".join(word) for word in
                                             ("javascript", "vbscript", "livescript", "mocha"))
                            + ")[\x00-\x20\x7f]*:", re.I)
_EMBEDDED_IMAGE = re.compile(r"^data:image/(?:(?:png|jpeg|gif|webp);base64,|svg\+xml[;,])")
_SCHEME = re.compile(r"^[^/?#]*:")
_CSS_FETCH = re.compile(r"(?<!blocked-)url\s*\(|@import|expression\s*\(|image-set\s*\(", re.I)
_URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "poster", "background", "cite", "longdesc",
                   "data", "codebase", "classid", "archive", "usemap", "manifest", "ping", "lowsrc", "dynsrc",
                   "icon", "profile", "xlink:href", "srcdoc", "imagesrcset", "itemtype", "xml:base"}
_DEFUSED_COLON = "\u2236"


def _normalised(value: str) -> str:
    """The value as a browser reads a URL: control characters and spaces removed, lower case."""
    return _CONTROL.sub("", value).lower()


def _has_script_scheme(value: str) -> bool:
    first = value.find(":")
    if first == -1:
        return False
    if value.find(":", first + 1) == -1:  # one colon (every base64 image): only the text before it matters
        return bool(_SCRIPT_SCHEME.search(value, 0, first + 1))
    return bool(_SCRIPT_SCHEME.search(value))


def is_embedded_image(value: str) -> bool:
    """``data:image/png;base64,...`` (or jpeg, gif, webp, svg+xml): an image that needs no request."""
    return bool(_EMBEDDED_IMAGE.match(_normalised(value[:80])))  # the prefix decides; no copy of the image


def is_safe_href(value: str, *, relative_allowed: bool = True) -> bool:
    """A same-document anchor (``#x``) or, if ``relative_allowed``, a relative path that stays inside the
    folder's parent (``page.html``, ``logs/x.log``, ``../<other run>/index.html``; not ``../../x``)."""
    v = _CONTROL.sub("", value)
    if v.startswith("#"):
        return True
    if not relative_allowed or not v or v.startswith(("/", "\\")):
        return False
    decoded = unquote(v)
    if "\\" in v or "\\" in decoded or _SCHEME.match(v) or _SCHEME.match(decoded):
        return False
    path = posixpath.normpath(re.split(r"[?#]", decoded, maxsplit=1)[0] or ".")
    return path != ".." and not path.startswith("../..")


_DROP = object()


def _safe_attribute(tag: str, name: str, value: str | None, attrs: dict[str, str | None]):
    """The attribute's value to keep (script schemes defused), or ``_DROP``."""
    kept = _kept_value(tag, name, value, attrs)
    if isinstance(kept, str) and _has_script_scheme(kept):
        return kept.replace(":", _DEFUSED_COLON)
    return kept


def _kept_value(tag: str, name: str, value: str | None, attrs: dict[str, str | None]):
    if name.startswith("on") or name == "srcdoc":
        return _DROP
    if value is None:
        return None if name not in _URL_ATTRIBUTES else _DROP
    if name == "href":
        return value if is_safe_href(value, relative_allowed=tag in ("a", "area")) else _DROP
    if name == "src":
        return value if tag == "img" and is_embedded_image(value) else _DROP
    if name in _URL_ATTRIBUTES:
        return value if is_safe_href(value, relative_allowed=False) else _DROP
    if name == "content" and tag == "meta" and (attrs.get("http-equiv") or "").strip().lower() == "refresh":
        return _DROP
    if name == "style" and _CSS_FETCH.search(_CONTROL.sub("", value)):
        return _DROP
    return value


def _start_tag(tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> str:
    parts = [tag] + [name if value is None else f'{name}="{html.escape(value, quote=True)}"'
                     for name, value in attrs]
    return "<" + " ".join(parts) + (" />" if self_closing else ">")


class _Sanitizer(HTMLParser):
    """Finds the start tags and style texts to rewrite; records ``(offset, old text, new text)``."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", page)]
        self.edits: list[tuple[int, str, str]] = []
        self.in_style = False

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> None:
        raw = self.get_starttag_text() or ""
        kept: list[tuple[str, str | None]] = []
        changed = False
        lookup = {k.lower(): v for k, v in attrs}
        for name, value in attrs:
            safe = _safe_attribute(tag, name.lower(), value, lookup)
            if safe is _DROP:
                changed = True
                continue
            changed = changed or safe != value
            kept.append((name, safe))
        if changed:
            self._edit(raw, _start_tag(tag, kept, self_closing))

    def _edit(self, old: str, new: str) -> None:
        at = self._offset()
        if self.page[at:at + len(old)] != old:  # never expected: refuse to guess rather than leave it
            raise RuntimeError(f"HTML sanitiser lost its position at offset {at}")
        self.edits.append((at, old, new))

    def handle_starttag(self, tag, attrs):
        self._tag(tag, attrs, self_closing=False)
        self.in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self._tag(tag, attrs, self_closing=True)

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False

    def handle_data(self, data):
        if self.in_style and _CSS_FETCH.search(data):
            self._edit(data, _CSS_FETCH.sub(lambda m: "blocked-" + m.group(0).lstrip("@"), data))


def sanitize_html(page: str) -> str:
    """``page`` with every unsafe URL attribute removed and script schemes defused (see the module doc)."""
    page = page.replace("--!>", "-->")
    parser = _Sanitizer(page)
    parser.feed(page)
    parser.close()
    if not parser.edits:
        return page
    out, last = [], 0
    for at, old, new in sorted(parser.edits):
        out += [page[last:at], new]
        last = at + len(old)
    out.append(page[last:])
    return "".join(out)
