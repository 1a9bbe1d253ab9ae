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

Only start tags that are not already in the canonical form (lower-case names, double-quoted escaped values) and
style texts are rewritten, spliced at the positions the stdlib :class:`html.parser.HTMLParser` found them; the rest
of the page, embedded images included, is kept byte for byte. Writing every other tag canonically means a browser
reads exactly the attributes checked here. Where the stdlib parser and a browser read markup differently, the page
is first made to mean the same to both: NUL becomes U+FFFD, ``--!>`` ends a comment, ``<!-->`` is an empty
comment, ``<![CDATA[`` is text, ``<svg>``/``<math>``/``<script>`` tags are text (no report page has them; inside
svg/math a browser does not treat ``<style>`` as raw text, and script text has states the stdlib parser does not
know), and any ``<`` the stdlib parser skipped as unreadable becomes ``&lt;``. A
seeded fuzz test checks the result with a WHATWG parser (html5lib) as well.
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
                            + ")[\x00-\x20\x7f]*:|data[\x00-\x20\x7f]*:[\x00-\x20\x7f]*text/html", re.I)
_EMBEDDED_IMAGE = re.compile(r"^data:image/(?:(?:png|jpeg|gif|webp);base64,|svg\+xml[;,])")
_SCHEME = re.compile(r"^[^/?#]*:")
_CSS_FETCH = re.compile(r"(?<!blocked-)url\s*\(|@import|expression\s*\(|image-set\s*\(", re.I)
_URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "poster", "background", "cite", "longdesc",
                   "data", "codebase", "classid", "archive", "usemap", "manifest", "ping", "lowsrc", "dynsrc",
                   "icon", "profile", "xlink:href", "srcdoc", "imagesrcset", "itemtype", "xml:base"}
_DEFUSED_COLON = "\u2236"
_AS_TEXT = {"svg", "math", "script"}  # no report page has them; their content is read as HTML by both parsers
_MARKUP_START = re.compile(r"<(?:[a-zA-Z]|/|!|\?)")
_ODD_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_ATTRIBUTE_NAME = re.compile(r"[a-zA-Z_:][-a-zA-Z0-9_:.]*\Z")


def _has_script_scheme(value: str) -> bool:
    first = value.find(":")
    if first == -1:
        return False
    if value.find(":", first + 1) == -1:  # one colon (every base64 image): only the text around it matters
        after = first + 1
        while after < len(value) and (value[after] <= " " or value[after] == "\x7f"):
            after += 1
        return bool(_SCRIPT_SCHEME.search(value, 0, after + len("text/html")))
    return bool(_SCRIPT_SCHEME.search(value))


def is_embedded_image(value: str) -> bool:
    """``data:image/png;base64,...`` (or jpeg, gif, webp, svg+xml): an image that needs no request."""
    # strict: only surrounding white space is allowed (a browser turns NUL into U+FFFD, making a relative URL)
    return bool(_EMBEDDED_IMAGE.match(value[:80].lstrip(" \t\n\r\f").lower()))


def is_safe_href(value: str, *, relative_allowed: bool = True) -> bool:
    """A same-document anchor (``#x``) or, if ``relative_allowed``, a relative path that stays inside the
    folder's parent (``page.html``, ``logs/x.log``, ``../<other run>/index.html``; not ``../../x``)."""
    if _ODD_CONTROL.search(value):
        return False  # control characters other than white space: nothing a kit page writes
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
    if name == "src":  # an image's own bytes must not spell a script URL either (defusing would break it)
        return value if tag == "img" and is_embedded_image(value) and not _has_script_scheme(value) else _DROP
    if name in _URL_ATTRIBUTES:
        return value if is_safe_href(value, relative_allowed=False) else _DROP
    if name == "content" and tag == "meta" and (attrs.get("http-equiv") or "").strip().lower() == "refresh":
        return _DROP
    if name == "style" and _CSS_FETCH.search(_CONTROL.sub("", value)):
        return _DROP
    return value


def _start_tag(tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> str:
    """The canonical form: lower-case names, every value double-quoted with ``& < > "`` escaped (one reading)."""
    parts = "".join(f" {name}" if value is None
                    else f' {name}="{html.escape(value, quote=False).replace(chr(34), "&quot;")}"'
                    for name, value in attrs)
    return f"<{tag}{parts}{'/' if self_closing else ''}>"


class _Sanitizer(HTMLParser):
    """Finds the start tags and texts to rewrite; records ``(offset, old text, new text)``."""

    def __init__(self, page: str):
        # convert_charrefs=True: text runs to the next "<" (with False, a stray "&#x" makes the stdlib parser
        # read the rest of the page as text); positions are taken from the page itself, never from the text
        super().__init__(convert_charrefs=True)
        self.page = page
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", page)]
        self.edits: list[tuple[int, str, str]] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> None:
        raw = self.get_starttag_text() or ""
        if tag in _AS_TEXT:  # inside svg/math a browser does not treat <style> as raw text; a script's raw text
            self._edit("<", "&lt;")  # has states ("<!--<script>") the stdlib parser does not know
            return
        kept: list[tuple[str, str | None]] = []
        lookup = {k.lower(): v for k, v in attrs}
        for name, value in attrs:
            name = name.lower()
            safe = _safe_attribute(tag, name, value, lookup) if _ATTRIBUTE_NAME.match(name) else _DROP
            if safe is not _DROP:
                kept.append((name, safe))
        # every tag is written in the canonical form unless it already is: a browser then reads exactly the
        # attributes checked here, whatever odd quoting or separators the original used
        canonical = _start_tag(tag, kept, self_closing)
        if raw != canonical:
            self._edit(raw, canonical)

    def _edit(self, old: str, new: str) -> None:
        at = self._offset()
        if self.page[at:at + len(old)] != old:  # never expected: refuse to guess rather than leave it
            raise RuntimeError(f"HTML sanitiser lost its position at offset {at}")
        self.edits.append((at, old, new))

    def set_cdata_mode(self, elem):
        if elem != "script":  # a <script> tag is made text, so what follows it is markup for a browser too
            super().set_cdata_mode(elem)

    def handle_starttag(self, tag, attrs):
        self._tag(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag, attrs):
        self._tag(tag, attrs, self_closing=True)

    def handle_data(self, data):
        if self.cdata_elem == "style":  # raw text: data is exactly the page's characters
            self._block_css(data)
        elif not self.cdata_elem and self.page.startswith("<", at := self._offset()):
            # a "<" the stdlib parser did not read as markup. After "<" + letter, "</", "<!" or "<?" it gave up
            # on a construct and skipped to the next ">": every "<" in that stretch becomes text for the browser
            # as well, so the browser cannot find a tag the sanitiser never looked at
            if _MARKUP_START.match(self.page, at):
                end = self.page.find(">", at + 1)
                end = (self.page.find("<", at + 1) if end < 0 else end + 1)
                end = at + 1 if end < 0 else end
            else:
                end = at + 1
            raw = self.page[at:end]
            self.edits.append((at, raw, raw.replace("<", "&lt;")))

    def _block_css(self, css: str) -> None:
        if _CSS_FETCH.search(css):
            self._edit(css, _CSS_FETCH.sub(lambda m: "blocked-" + m.group(0).lstrip("@"), css))


# constructs where the stdlib parser and a browser disagree, made to mean the same to both first:
# browsers end a comment at "--!>" and at once for "<!-->"/"<!--->"; "<![CDATA[" is a bogus comment in HTML;
# a browser reads NUL as U+FFFD inside tags (the stdlib parser ends a tag name there)
_ALIGN = [("\x00", "\ufffd"), ("--!>", "-->"), ("<!--->", "<!---->"), ("<!-->", "<!---->"), ("<![", "&lt;![")]


def sanitize_html(page: str) -> str:
    """``page`` with every unsafe URL attribute removed and script schemes defused (see the module doc)."""
    for old, new in _ALIGN:
        page = page.replace(old, new)
    parser = _Sanitizer(page)
    parser.feed(page)
    parser.close()
    if parser.cdata_elem == "style" and parser.rawdata:  # a <style> never closed runs to the end of the page
        at = len(page) - len(parser.rawdata)
        if _CSS_FETCH.search(parser.rawdata):
            parser.edits.append((at, parser.rawdata,
                                 _CSS_FETCH.sub(lambda m: "blocked-" + m.group(0).lstrip("@"), parser.rawdata)))
    if not parser.edits:
        return page
    out, last = [], 0
    for at, old, new in sorted(parser.edits):
        out += [page[last:at], new]
        last = at + len(old)
    out.append(page[last:])
    return "".join(out)
