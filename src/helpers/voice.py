"""Voice of the customer: what the free-text comments are about, and how they sound.

Three tools, all offline, seeded and deterministic:

- **Codebook themes** (:func:`parse_codebook`, :func:`match_themes`, :func:`theme_flags_sql`): a codebook (the
  kit's is ``params/themes.yaml``, read by the report layer, :func:`helpers.voice_report.load_themes`, and passed to
  every analysis function as ``codebook``; no function here reads params on its own) maps a theme to phrases with
  simple boolean rules, as CX teams write them (``any`` of these phrases, ``all`` of these, ``none`` of those).
  Matching is case-insensitive, accent-tolerant (``cafe`` finds ``Café``),
  punctuation-tolerant (``don't`` finds ``don’t`` and ``don t``) and on word boundaries (``app`` does not find
  ``apply``; ``charg*`` finds ``charge``, ``charged``, ``charges``). A comment is searched in lower case without
  accents (DuckDB ``lower(strip_accents(...))``); a phrase is split into words the same way, and matches when its
  words occur in order, separated by any run of separator characters (:data:`SEPARATOR_RE2`: punctuation,
  spaces, symbols, emoji), starting and (unless ``prefix*``) ending on a word boundary. Each rule is one RE2
  alternation, so the whole codebook is one
  SQL query, vectorised in DuckDB (``bench/bench_voice.py``: 1,000,000 comments against a plain pandas
  ``str.contains`` pass).
- **Suggested themes** (:func:`suggest_themes`, :func:`distinctive_terms`): topics found in the comments by
  TF-IDF + non-negative matrix factorisation (scikit-learn, fixed ``random_state``) on a seeded sample of at most
  200,000 comments, and the n-grams that set detractors apart from promoters by the log-odds ratio with an
  informative Dirichlet prior (Monroe, Colaresi & Quinn 2008). Each suggestion carries its top terms and three
  representative comments, so an analyst can promote it into the codebook.
- **Sentiment** (:func:`sentiment`): VADER's compound score (Hutto & Gilbert 2014) from the lexicon that ships
  inside the ``vaderSentiment`` package (no download; the package imports ``requests`` only in its ``__main__``
  demo). VADER is a per-text rule system, so the comments are scored once per *distinct* text (comments repeat a
  lot); the cost per distinct comment is printed by the benchmark.

All text is returned raw in DataFrames; pages escape it with :func:`helpers.formatting.html_escape` /
:func:`helpers.formatting.md_escape` (see :func:`escape_text`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb
import numpy as np
import pandas as pd

from helpers.errors import KitError, ParamsError
from helpers.formatting import html_escape, md_escape, shorten
from helpers.params_yaml import load_params_yaml, parse_params_yaml

__all__ = [
    "Theme", "Codebook", "load_codebook", "parse_codebook", "codebook_from_text", "sentiment_label",
    "normalise_text", "match_themes", "theme_flags_sql", "accent_table",
    "search_comments", "load_comments", "nps_group", "sentiment", "SuggestedThemes", "suggest_themes",
    "DistinctiveTerms",
    "distinctive_terms", "log_odds_dirichlet", "escape_text", "MAX_SAMPLE",
    "EmergingThemes", "emerging_themes",
]

MAX_SAMPLE = 200_000  # the largest sample the suggested-theme model is fitted on

# --- normalisation -----------------------------------------------------------------------------------------

# Characters that separate words: ASCII that is not a letter or digit, Latin-1 punctuation and symbols, general
# punctuation (’ “ ” – — …), arrows and symbols, CJK and full-width punctuation, emoji. Everything else (any
# letter or digit of any script) is part of a word. Inclusive code-point ranges.
_SEPARATOR_RANGES = ((0x00, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0xBF), (0xD7, 0xD7), (0xF7, 0xF7),
                     (0x2000, 0x206F), (0x2190, 0x2BFF), (0x3000, 0x303F), (0xFE10, 0xFE6F), (0xFF00, 0xFF0F),
                     (0x1F000, 0x1FAFF))


def _class(fmt) -> str:
    return "[" + "".join(fmt(lo) if lo == hi else fmt(lo) + "-" + fmt(hi) for lo, hi in _SEPARATOR_RANGES) + "]"


#: the separator class in RE2 syntax (DuckDB) and in Python ``re`` syntax
SEPARATOR_RE2 = _class(lambda c: "\\x{%X}" % c)
_SEPARATOR_PY = re.compile(_class(lambda c: "\\U%08X" % c) + "+")

#: DuckDB expression template: ``{x}`` -> the text the matcher searches (lower case, accents stripped).
MATCH_TEXT_SQL = "lower(strip_accents(coalesce({x}, '')))"


def _match_text_sql(expr: str, portable: bool = False) -> str:
    """The text the matcher searches. ``portable``: the same text without DuckDB's ``strip_accents`` (Spark
    has none), by ``translate`` with :func:`accent_table` (lower case, accents mapped to their letters,
    combining accents deleted), so the query transpiles to Spark SQL unchanged."""
    if not portable:
        return MATCH_TEXT_SQL.format(x=expr)
    src, dst = accent_table()
    lit = (lambda t: "'" + t.replace("'", "''") + "'")
    return f"lower(translate(coalesce({expr}, ''), {lit(src)}, {lit(dst)}))"


#: the code points :func:`accent_table` maps: Latin-1 to Greek Extended (Latin, Greek, Cyrillic letters with
#: accents; combining accents U+0300-U+036F)
_ACCENT_RANGE = (0xC0, 0x2000)
_ACCENTS: tuple[str, str] | None = None


def accent_table() -> tuple[str, str]:
    """``(from, to)`` for SQL ``translate``: each letter of :data:`_ACCENT_RANGE` that DuckDB's ``strip_accents``
    changes into one other character (``é`` -> ``e``), then the characters it deletes (combining accents;
    ``translate`` deletes the characters of ``from`` beyond the length of ``to``). Taken from DuckDB itself, so
    the portable matcher equals the DuckDB one on these characters (tests check it on every one of them)."""
    global _ACCENTS
    if _ACCENTS is None:
        con = _connect()
        try:
            rows = con.execute(f"SELECT i, strip_accents(chr(CAST(i AS INTEGER))) FROM range({_ACCENT_RANGE[0]}, {_ACCENT_RANGE[1]}) "
                               "AS t(i) WHERE i NOT BETWEEN 55296 AND 57343 ORDER BY i").fetchall()
        finally:
            con.close()
        mapped = [(chr(i), out) for i, out in rows if out != chr(i) and len(out) == 1]
        deleted = [chr(i) for i, out in rows if out == ""]
        _ACCENTS = ("".join(a for a, _ in mapped) + "".join(deleted), "".join(b for _, b in mapped))
    return _ACCENTS


def _connect() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection as the kit opens them (no extension loading, no progress bar, the process's memory
    limit and spill folder: :func:`helpers.engine.duckdb_engine.duckdb_connection`)."""
    from helpers.engine.duckdb_engine import duckdb_connection  # noqa: PLC0415

    return duckdb_connection()


_NORMALISER: tuple[int, duckdb.DuckDBPyConnection] | None = None


def normalise_text(texts: Iterable[object]) -> list[str]:
    """The matcher's view of each text: words in lower case without accents, one space apart.

    ``"Café, don’t!"`` -> ``"cafe don t"``. Lower case and accents go through the same DuckDB functions the
    matcher applies to comments (``lower(strip_accents(...))``), words are split on :data:`SEPARATOR_RE2`.
    """
    values = ["" if t is None else str(t) for t in texts]
    if not values:
        return []
    global _NORMALISER
    import os

    if _NORMALISER is None or _NORMALISER[0] != os.getpid():  # one connection per process (never across a
        _NORMALISER = (os.getpid(), _connect())                # fork); a cursor per call (a connection: ~30 ms)
    con = _NORMALISER[1].cursor()
    try:
        con.register("_texts", pd.DataFrame({"i": np.arange(len(values)), "t": values}))
        out = con.execute(f"SELECT {_match_text_sql('t')} FROM _texts ORDER BY i").fetchall()
    finally:
        con.close()
    return [" ".join(w for w in _SEPARATOR_PY.split(r[0]) if w) for r in out]


# --- the codebook ------------------------------------------------------------------------------------------

_THEME_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_THEME_KEYS = {"label", "description", "any", "all", "none", "rating"}
_RATING = re.compile(r"^(attr_[a-z0-9_]+|csat|nps|ces)$")
_MAX_THEMES = 200
_MAX_PHRASES = 500
_MAX_PHRASE_CHARS = 200


@dataclass(frozen=True)
class Pattern:
    """One phrase: its normalised words (``text``) and whether it is a word prefix (``charg*``)."""

    phrase: str
    text: str
    prefix: bool

    def regex(self) -> str:
        """RE2 for the phrase inside the alternation of :func:`_any_sql`: words joined by runs of separators,
        ending on a word boundary unless it is a prefix."""
        body = (SEPARATOR_RE2 + "+").join(self.text.split(" "))
        return body + ("" if self.prefix else f"(?:{SEPARATOR_RE2}|$)")


def _any_sql(patterns: Sequence[Pattern], column: str) -> str:
    """True when one of ``patterns`` occurs in ``column`` starting on a word boundary: one RE2 search."""
    regex = f"(?:^|{SEPARATOR_RE2})(?:" + "|".join(p.regex() for p in patterns) + ")"
    return f"regexp_matches({column}, '{regex.replace(chr(39), chr(39) * 2)}')"


@dataclass(frozen=True)
class Theme:
    """A codebook theme: it matches a comment when (``any`` is empty or one of ``any`` occurs) and every group in
    ``all`` has a phrase that occurs (a group is one phrase or a list of alternatives) and no ``none`` phrase
    occurs."""

    name: str
    label: str
    any: tuple[Pattern, ...] = ()
    all: tuple[tuple[Pattern, ...], ...] = ()
    none: tuple[Pattern, ...] = ()
    description: str = ""
    rating: str = ""  # the rating question that already asks about it (e.g. attr_speed); "" = no question does

    @property
    def unasked(self) -> bool:
        """True when no rating question covers the theme (only the comments tell about it)."""
        return not self.rating

    def sql(self, column: str = "_text") -> str:
        """A DuckDB boolean expression over ``column`` (the comment in lower case without accents)."""
        parts = []
        if self.any:
            parts.append(_any_sql(self.any, column))
        for group in self.all:
            parts.append(_any_sql(group, column))
        if self.none:
            parts.append("NOT " + _any_sql(self.none, column))
        return "(" + " AND ".join(parts) + ")"

    def phrases(self) -> list[str]:
        return [p.phrase for p in self.any] + [p.phrase for g in self.all for p in g] + [p.phrase for p in self.none]


@dataclass(frozen=True)
class Codebook:
    """Themes in file order; ``source`` names the file (for messages)."""

    themes: tuple[Theme, ...]
    source: str = ""

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.themes]

    @property
    def labels(self) -> dict[str, str]:
        return {t.name: t.label for t in self.themes}

    def __getitem__(self, name: str) -> Theme:
        for t in self.themes:
            if t.name == name:
                return t
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.themes)

    @property
    def table(self) -> pd.DataFrame:
        """One row per theme: name, label, and its rules as written."""
        return pd.DataFrame([{
            "theme": t.name, "label": t.label,
            "any": ", ".join(p.phrase for p in t.any),
            "all": " AND ".join("(" + " OR ".join(p.phrase for p in g) + ")" for g in t.all),
            "none": ", ".join(p.phrase for p in t.none), "description": t.description, "rating": t.rating,
        } for t in self.themes])

    @property
    def unasked(self) -> list[str]:
        """Names of the themes no rating question covers (no ``rating`` in the codebook)."""
        return [t.name for t in self.themes if t.unasked]


def _phrase_list(value: object, path: str, field_name: str, allow_groups: bool) -> list:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ParamsError(path, f"expected a phrase or a list of phrases, got {type(value).__name__} "
                                f"{shorten(value)}", field=field_name)
    if len(value) > _MAX_PHRASES:
        raise ParamsError(path, f"{len(value)} phrases; at most {_MAX_PHRASES} per list", field=field_name)
    out = []
    for i, item in enumerate(value):
        where = f"{field_name}[{i}]"
        if allow_groups and isinstance(item, list):
            if not item:
                raise ParamsError(path, "an empty group of alternatives; write at least one phrase", field=where)
            out.append([_check_phrase(x, path, f"{where}[{j}]") for j, x in enumerate(item)])
        else:
            out.append(_check_phrase(item, path, where))
    return out


def _check_phrase(item: object, path: str, where: str) -> str:
    if isinstance(item, bool) or not isinstance(item, (str, int, float)):
        raise ParamsError(path, f"expected a phrase (text), got {type(item).__name__} {shorten(item)}", field=where)
    text = str(item).strip()
    if not text:
        raise ParamsError(path, "an empty phrase", field=where)
    if len(text) > _MAX_PHRASE_CHARS:
        raise ParamsError(path, f"phrase longer than {_MAX_PHRASE_CHARS} characters: {shorten(text)}", field=where)
    if "*" in text.rstrip("*") or text.endswith("**"):
        raise ParamsError(path, f"phrase {shorten(text)}: '*' is allowed only once, at the end (a word prefix, "
                                "e.g. 'charg*' for charge, charged, charges)", field=where)
    return text


def _compile(phrases: list[str], path: str, where: str) -> list[Pattern]:
    normalised = normalise_text([p.rstrip("*") for p in phrases])
    out = []
    for i, (phrase, text) in enumerate(zip(phrases, normalised)):
        if not text:
            raise ParamsError(path, f"phrase {shorten(phrase)} has no letters or digits, so it can never match",
                              field=f"{where}[{i}]" if len(phrases) > 1 else where)
        out.append(Pattern(phrase, text, phrase.endswith("*")))
    return out


def parse_codebook(raw: object, path: object = "<codebook>") -> Codebook:
    """Validate the parsed YAML of a codebook (``{"themes": {name: {label, any, all, none, description}}}``).

    Raises :class:`ParamsError` naming the file, the theme (``themes.<name>.<field>``) and the problem.
    """
    path = str(path)
    if raw is None:
        raise ParamsError(path, "the file is empty; expected 'themes:' with at least one theme")
    if not isinstance(raw, dict):
        raise ParamsError(path, f"expected a mapping with the key 'themes', got {type(raw).__name__}")
    extra = sorted(str(k) for k in raw if k != "themes")
    if extra:
        raise ParamsError(path, "unknown key; the only top-level key is 'themes'", field=extra[0])
    themes_raw = raw.get("themes")
    if not isinstance(themes_raw, dict) or not themes_raw:
        raise ParamsError(path, "expected a mapping of theme name -> rules with at least one theme", field="themes")
    if len(themes_raw) > _MAX_THEMES:
        raise ParamsError(path, f"{len(themes_raw)} themes; at most {_MAX_THEMES}", field="themes")
    themes = []
    for name, spec in themes_raw.items():
        where = f"themes.{name}"
        if not isinstance(name, str) or not _THEME_NAME.match(name):
            raise ParamsError(path, f"theme name {shorten(name)} must be lower-case letters, digits and '_', "
                                    "starting with a letter (it becomes a column name)", field=f"themes.{name}")
        if not isinstance(spec, dict):
            raise ParamsError(path, f"expected the theme's rules (label, any, all, none), got "
                                    f"{type(spec).__name__} {shorten(spec)}", field=where)
        unknown = sorted(str(k) for k in spec if k not in _THEME_KEYS)
        if unknown:
            raise ParamsError(path, f"unknown key; the keys of a theme are {', '.join(sorted(_THEME_KEYS))}",
                              field=f"{where}.{unknown[0]}")
        label = spec.get("label")
        if not isinstance(label, str) or not label.strip():
            raise ParamsError(path, "every theme needs a label (the name readers see), e.g. "
                                    "label: Mobile app problems", field=f"{where}.label")
        description = spec.get("description", "") or ""
        if not isinstance(description, str):
            raise ParamsError(path, "expected text", field=f"{where}.description")
        rating = spec.get("rating", "") or ""
        if not isinstance(rating, str) or (rating and not _RATING.match(rating.strip())):
            raise ParamsError(path, f"expected the rating column that asks about this theme (an attr_* column, "
                                    f"csat, nps or ces), got {shorten(rating)}", field=f"{where}.rating")
        any_ = _phrase_list(spec.get("any", []) or [], path, f"{where}.any", False)
        all_ = _phrase_list(spec.get("all", []) or [], path, f"{where}.all", True)
        none = _phrase_list(spec.get("none", []) or [], path, f"{where}.none", False)
        if not any_ and not all_:
            raise ParamsError(path, "a theme needs phrases under 'any' (one of them must occur) or 'all' (each "
                                    "must occur)", field=where)
        groups = tuple(tuple(_compile(g if isinstance(g, list) else [g], path, f"{where}.all[{i}]"))
                       for i, g in enumerate(all_))
        themes.append(Theme(name, label.strip(), tuple(_compile(any_, path, f"{where}.any")), groups,
                            tuple(_compile(none, path, f"{where}.none")), description.strip(), rating.strip()))
    return Codebook(tuple(themes), path)


def load_codebook(path: str | Path) -> Codebook:
    """Read and validate the codebook file ``path`` (bounded YAML, no anchors/aliases; see
    :mod:`helpers.params_yaml`). A relative path that does not exist is taken from the repository root.

    The analysis functions never read a file themselves: the report layer and the notebooks load the codebook
    (:func:`helpers.voice_report.load_themes` reads ``params/themes.yaml``) and pass it in.
    """
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        from helpers.config import repo_root

        p = repo_root() / p
    if not p.is_file():
        raise ParamsError(path, "file not found (the codebook of comment themes; copy params/themes.yaml from "
                                "the kit and edit it)")
    return parse_codebook(load_params_yaml(p), p)


def codebook_from_text(text: str, path: object = "<text>") -> Codebook:
    """Parse a codebook from YAML text (tests, notebooks)."""
    return parse_codebook(parse_params_yaml(text, path), path)


# --- matching ----------------------------------------------------------------------------------------------

def _as_codebook(codebook: object, what: str = "comment themes") -> Codebook:
    """``codebook`` itself when it is a :class:`Codebook`; otherwise a :class:`KitError` saying how to get one
    (the analysis functions take the codebook as an argument and never read params themselves)."""
    if isinstance(codebook, Codebook):
        return codebook
    how = ("load it with helpers.voice_report.load_themes() (params/themes.yaml) or "
           "helpers.voice.load_codebook(path), or write one with helpers.voice.codebook_from_text(yaml_text), "
           "and pass it as codebook=")
    if codebook is None:
        raise KitError(f"{what}: no codebook of comment themes given; {how}")
    raise KitError(f"{what}: expected a codebook of comment themes, got {type(codebook).__name__} "
                   f"{shorten(codebook)}; {how}")


def theme_flags_sql(codebook: Codebook, source: str = "responses", text_column: str = "comment",
                    columns: Sequence[str] = ("response_id",), where: str = "", portable: bool = False) -> str:
    """SQL selecting ``columns`` and one boolean column per theme for the rows of ``source`` with a comment.

    Rows whose comment is empty or only spaces are left out (they are no comment). ``where`` is an extra SQL
    condition (without ``WHERE``). The theme columns are named after the themes (quoted identifiers).
    ``portable``: the text normalised without DuckDB-only functions (:func:`_match_text_sql`), for any engine
    (:mod:`helpers.engine`; Spark through SQLGlot).
    """
    from helpers.data import quote_ident

    cols = ", ".join(quote_ident(c) for c in columns)
    cond = f"{quote_ident(text_column)} IS NOT NULL AND trim({quote_ident(text_column)}) <> ''"
    if where:
        cond += f" AND ({where})"
    flags = ", ".join(f"{t.sql('_text')} AS {quote_ident(t.name)}" for t in codebook.themes)
    return (f"SELECT {cols}{', ' if cols else ''}{flags} FROM (SELECT *, "
            f"{_match_text_sql(quote_ident(text_column), portable)} AS _text FROM {source} WHERE {cond})")


def match_themes(comments, codebook: Codebook) -> pd.DataFrame:
    """One boolean column per theme for each comment (index of ``comments`` kept; a missing comment matches none).

    ``comments`` is a pandas Series (or a list) of raw texts. Runs the codebook as one DuckDB query.
    """
    cb = _as_codebook(codebook, "match themes")
    s = comments if isinstance(comments, pd.Series) else pd.Series(list(comments), dtype=object)
    codes, uniques = pd.factorize(s.astype(object).where(s.notna(), None))  # each distinct text matched once
    con = _connect()
    try:
        frame = pd.DataFrame({"_row": np.arange(len(uniques), dtype=np.int64),
                              "comment": np.asarray(uniques, dtype=object)})
        con.register("_comments", frame)
        flags = con.execute(theme_flags_sql(cb, "_comments", "comment", ("_row",))).df()
    finally:
        con.close()
    matched = np.zeros((len(uniques) + 1, len(cb)), dtype=bool)  # last row: missing comments
    if len(flags):
        matched[flags["_row"].to_numpy()] = flags[cb.names].to_numpy(dtype=bool)
    return pd.DataFrame(matched[np.where(codes >= 0, codes, len(uniques))], index=s.index, columns=cb.names)


def search_comments(comments, phrase: str) -> pd.Series:
    """Which comments contain ``phrase`` under the codebook's rules (case/accent/punctuation-tolerant, word
    boundaries, ``prefix*``). Returns a boolean Series aligned with ``comments``."""
    cb = parse_codebook({"themes": {"search": {"label": "search", "any": [phrase]}}}, "search phrase")
    return match_themes(comments, cb)["search"]


def load_comments(ds, start=None, end=None, department: str | None = None) -> pd.DataFrame:
    """The responses with a comment from a :class:`helpers.data.Dataset` (DuckDB ``ds.con``): ``response_date``,
    ``department``, ``csat``, ``nps``, ``comment`` (no ids), optionally in ``[start, end]`` and one department.

    For the row-level tools (:func:`suggest_themes`, :func:`distinctive_terms`, :func:`search_comments`); add
    ``group = nps_group(frame["nps"])`` for detractors vs promoters.
    """
    conds, params = ["comment IS NOT NULL", "trim(comment) <> ''"], []
    if start is not None:
        conds.append("CAST(response_date AS DATE) >= CAST(? AS DATE)")
        params.append(pd.Timestamp(start).date())
    if end is not None:
        conds.append("CAST(response_date AS DATE) <= CAST(? AS DATE)")
        params.append(pd.Timestamp(end).date())
    if department is not None:
        conds.append("department = ?")
        params.append(department)
    return ds.con.execute("SELECT response_date, department, csat, nps, comment FROM responses WHERE "
                          + " AND ".join(conds) + " ORDER BY response_date, response_id", params).df()


def nps_group(nps) -> pd.Series:
    """``detractor`` (0-6), ``passive`` (7-8), ``promoter`` (9-10), None when missing: the groups of
    :func:`helpers.kpis.nps_group` as plain text."""
    from helpers.kpis import nps_group as _nps_group

    g = _nps_group(pd.Series(nps, dtype=float))
    return g.astype(object).where(g.notna(), None)


# --- sentiment ---------------------------------------------------------------------------------------------

_ANALYZER = None


def _vader():
    global _ANALYZER
    if _ANALYZER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # lexicon read from the package

        _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


def sentiment(comments) -> pd.Series:
    """VADER compound score in [-1, 1] per comment (NaN where there is no comment), index kept.

    ``compound = s / sqrt(s^2 + 15)`` of the summed valence of the lexicon words after VADER's rules (negation,
    boosters, "but", capitals, punctuation); Hutto & Gilbert (2014), computed by the ``vaderSentiment`` package
    itself once per distinct text. The usual reading: >= 0.05 positive, <= -0.05 negative, neutral between.
    """
    s = comments if isinstance(comments, pd.Series) else pd.Series(list(comments), dtype=object)
    present = s.notna() & s.astype(str).str.strip().ne("") if len(s) else pd.Series([], dtype=bool)
    codes, uniques = pd.factorize(s.where(present))
    analyzer = _vader()
    scores = np.array([analyzer.polarity_scores(str(u))["compound"] for u in uniques], dtype=float)
    out = np.full(len(s), np.nan)
    ok = codes >= 0
    out[ok] = scores[codes[ok]]
    return pd.Series(out, index=s.index, name="sentiment")


def sentiment_label(scores) -> pd.Series:
    """``negative`` (<= -0.05), ``neutral``, ``positive`` (>= 0.05): VADER's conventional thresholds."""
    x = pd.Series(scores, dtype=float)
    lab = np.where(x >= 0.05, "positive", np.where(x <= -0.05, "negative", "neutral"))
    return pd.Series(lab, index=x.index, dtype=object).where(x.notna(), None)


# --- suggested themes: TF-IDF + NMF ------------------------------------------------------------------------

def _clean_comments(comments) -> pd.Series:
    s = comments if isinstance(comments, pd.Series) else pd.Series(list(comments), dtype=object)
    s = s[s.notna()].astype(str)
    return s[s.str.strip().ne("")]


def _seeded_sample(s: pd.Series, max_comments: int, seed: int) -> pd.Series:
    if len(s) <= max_comments:
        return s
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(s), size=max_comments, replace=False))
    return s.iloc[pick]


def _representatives(texts: np.ndarray, weights: np.ndarray, k: int = 3, X=None) -> list[str]:
    """The ``k`` distinct comments with the largest weight; with the (CSR) term matrix ``X``, comments that use a
    different set of terms come first (so three comments that differ only in words outside the vocabulary do
    not crowd out the topic's other wordings), then the next heaviest ones."""
    order = np.argsort(-weights, kind="stable")
    order = order[weights[order] > 0]
    seen: list[str] = []
    if X is not None and hasattr(X, "indptr"):
        keys: set = set()
        for i in order[:5000]:  # the heaviest comments only: bounded time on a 200,000-comment sample
            key = tuple(X.indices[X.indptr[i]:X.indptr[i + 1]].tolist())
            if key in keys:
                continue
            keys.add(key)
            if texts[i] not in seen:
                seen.append(texts[i])
            if len(seen) == k:
                return seen
    for i in order:
        if texts[i] not in seen:
            seen.append(texts[i])
        if len(seen) == k:
            break
    return seen


@dataclass
class SuggestedThemes:
    """Topics found by TF-IDF + NMF. ``table``: one row per suggestion (``suggestion``, ``top_terms``,
    ``share`` of sampled comments whose strongest topic it is, ``examples`` = three representative comments,
    ``closest_theme`` in the codebook and ``overlap`` = share of its comments that theme already matches)."""

    table: pd.DataFrame
    n_comments: int
    n_sample: int
    n_distinct: int
    seed: int
    method: str

    def summary(self) -> str:
        new = self.table[self.table["overlap"].fillna(0) < 0.5] if "overlap" in self.table else self.table
        head = (f"{len(self.table)} suggested themes from {self.n_sample:,} comments"
                + (f" (a seeded sample of {self.n_comments:,}, seed {self.seed})" if self.n_sample < self.n_comments
                   else "") + f", {self.n_distinct:,} distinct texts; {self.method}.")
        if "overlap" in self.table and len(new):
            head += (f" {len(new)} of them are mostly outside the codebook (less than half of their comments match "
                     f"an existing theme): " + "; ".join(new["suggestion"].head(5)) + ".")
        return head

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.4 * len(self.table) + 1))
        t = self.table.iloc[::-1]
        ax.barh(t["suggestion"], 100 * t["share"], color="#4477AA")
        ax.set_xlabel("% of sampled comments (strongest topic)")
        ax.set_title("Suggested themes in the comments")
        return ax


def suggest_themes(comments, n_themes: int = 8, max_comments: int = MAX_SAMPLE, seed: int = 0,
                   n_terms: int = 8, codebook: Codebook | None = None, min_df: int | float = 5,
                   vocabulary: Sequence[str] | None = None) -> SuggestedThemes:
    """Suggested themes: NMF of the TF-IDF matrix of (a seeded sample of at most ``max_comments``) comments.

    ``X ~= W H`` with ``X`` the sublinear TF-IDF of unigrams and bigrams (English stop words removed, accents
    stripped), ``W, H >= 0`` minimising the Frobenius norm (Lee & Seung 1999; scikit-learn ``NMF``, ``nndsvda``
    start, ``random_state=seed``). A suggestion's top terms are the largest entries of its row of ``H``; its
    representative comments the three distinct comments with the largest weight in its column of ``W``.
    With ``codebook``, each suggestion is compared with the codebook: the theme that matches most of the comments
    whose strongest topic it is, and that share (``overlap``). ``vocabulary``: only these unigrams/bigrams are
    counted (e.g. the emerging words of :func:`emerging_themes`).
    """
    from sklearn.decomposition import NMF
    from sklearn.feature_extraction.text import TfidfVectorizer

    s = _clean_comments(comments)
    if len(s) < 2 * n_themes:
        raise KitError(f"suggested themes: {len(s)} comments are too few for {n_themes} themes")
    sample = _seeded_sample(s, max_comments, seed)
    texts = sample.to_numpy(dtype=object)
    vec = TfidfVectorizer(lowercase=True, strip_accents="unicode", stop_words="english", ngram_range=(1, 2),
                          min_df=min(min_df, max(1, len(texts) // 100)) if isinstance(min_df, int) else min_df,
                          max_df=0.5 if vocabulary is None else 1.0, sublinear_tf=True,
                          max_features=20_000 if vocabulary is None else None, dtype=np.float64,
                          vocabulary=list(dict.fromkeys(vocabulary)) if vocabulary is not None else None)
    X = vec.fit_transform(texts)
    if X.shape[1] < n_themes:
        raise KitError(f"suggested themes: only {X.shape[1]} distinct terms in the comments; fewer than "
                       f"{n_themes} themes cannot be found")
    model = NMF(n_components=n_themes, init="nndsvda", random_state=seed, max_iter=500)
    W = model.fit_transform(X)
    H = model.components_
    terms = vec.get_feature_names_out()
    strongest = np.where(W.max(axis=1) > 0, W.argmax(axis=1), -1)
    flags = match_themes(pd.Series(texts), codebook) if codebook is not None else None
    rows = []
    for k in range(n_themes):
        top = [str(terms[j]) for j in np.argsort(-H[k], kind="stable")[:n_terms] if H[k, j] > 0]
        mine = strongest == k
        row: dict[str, Any] = {"suggestion": ", ".join(top[:3]), "top_terms": top, "share": float(mine.mean()),
                               "n_comments": int(mine.sum()), "examples": _representatives(texts, W[:, k], X=X)}
        if flags is not None:
            if mine.any() and len(codebook):
                shares = flags[mine].mean()
                row["closest_theme"] = str(shares.idxmax())
                row["overlap"] = float(shares.max())
            else:
                row["closest_theme"], row["overlap"] = None, np.nan
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("share", ascending=False, kind="stable").reset_index(drop=True)
    return SuggestedThemes(table, len(s), len(sample), int(pd.Series(texts).nunique()), seed,
                           f"TF-IDF + NMF ({n_themes} topics, scikit-learn, random_state={seed})")


# --- distinctive n-grams: log-odds with an informative Dirichlet prior -------------------------------------

def log_odds_dirichlet(counts_i, counts_j, prior) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds ratio of each word in group ``i`` vs ``j`` with an informative Dirichlet prior, and its z-score.

    ``delta_w = log((y_iw + a_w) / (n_i + a0 - y_iw - a_w)) - log((y_jw + a_w) / (n_j + a0 - y_jw - a_w))``,
    ``var(delta_w) ~= 1/(y_iw + a_w) + 1/(y_jw + a_w)``, ``z_w = delta_w / sqrt(var)``, with ``n_i = sum_w y_iw``
    and ``a0 = sum_w a_w`` (Monroe, Colaresi & Quinn 2008, "Fightin' words", eqs. 16, 18-22).
    """
    yi, yj, a = (np.asarray(x, dtype=float) for x in (counts_i, counts_j, prior))
    ni, nj, a0 = yi.sum(), yj.sum(), a.sum()
    delta = np.log((yi + a) / (ni + a0 - yi - a)) - np.log((yj + a) / (nj + a0 - yj - a))
    var = 1.0 / (yi + a) + 1.0 / (yj + a)
    return delta, delta / np.sqrt(var)


@dataclass
class DistinctiveTerms:
    """n-grams that set one group of comments apart from another. ``table``: ``term``, ``count_a``, ``count_b``,
    ``log_odds`` (a vs b), ``z``, ``side`` (which group it marks), ``examples`` (three comments of that group)."""

    table: pd.DataFrame
    group_a: str
    group_b: str
    n_a: int
    n_b: int
    method: str

    def top(self, side: str, n: int = 10) -> pd.DataFrame:
        t = self.table[self.table["side"] == side]
        return t.head(n).reset_index(drop=True)

    def summary(self) -> str:
        a, b = self.top(self.group_a, 5), self.top(self.group_b, 5)
        return (f"Words that set {self.group_a} comments (n = {self.n_a:,}) apart from {self.group_b} comments "
                f"(n = {self.n_b:,}), {self.method}: {self.group_a}: " + ", ".join(a["term"]) + "; "
                + f"{self.group_b}: " + ", ".join(b["term"]) + ".")

    def plot(self, ax=None, n: int = 10):
        import matplotlib.pyplot as plt

        t = pd.concat([self.top(self.group_a, n), self.top(self.group_b, n)]).sort_values("z")
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.3 * len(t) + 1))
        colours = np.where(t["side"] == self.group_a, "#CC6677", "#117733")
        ax.barh(t["term"], t["z"], color=colours)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"z-score of the log-odds ({self.group_a} vs {self.group_b})")
        ax.set_title(f"Words that mark {self.group_a} vs {self.group_b} comments")
        return ax


def distinctive_terms(comments, group, group_a="detractor", group_b="promoter", ngram_range=(1, 2),
                      min_count: int = 5, z_min: float = 1.96, n_examples: int = 3) -> DistinctiveTerms:
    """Distinctive n-grams of comments in ``group_a`` vs ``group_b`` (``group`` labels each comment, e.g.
    detractor / passive / promoter). The prior is the n-gram's count in all comments of the two groups (the
    informative prior of Monroe et al. 2008). Counting runs once per distinct comment, weighted by its frequency.
    Terms with ``|z| >= z_min`` are kept, ordered by ``|z|``.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    frame = pd.DataFrame({"comment": pd.Series(comments).to_numpy(dtype=object),
                          "group": pd.Series(group).to_numpy(dtype=object)})
    frame = frame[frame["comment"].notna() & frame["group"].isin([group_a, group_b])]
    frame = frame[frame["comment"].astype(str).str.strip().ne("")]
    counts = frame.groupby(["comment", "group"], sort=True).size().unstack("group", fill_value=0)
    for g in (group_a, group_b):
        if g not in counts:
            raise KitError(f"distinctive terms: no comments in group {shorten(g)}")
    texts = counts.index.to_numpy(dtype=object)
    vec = CountVectorizer(lowercase=True, strip_accents="unicode", ngram_range=ngram_range,
                          token_pattern=r"(?u)\b\w\w+\b|\b\d\b")
    X = vec.fit_transform(texts)
    wa, wb = counts[group_a].to_numpy(dtype=float), counts[group_b].to_numpy(dtype=float)
    ya, yb = np.asarray(X.T @ wa).ravel(), np.asarray(X.T @ wb).ravel()
    keep = (ya + yb) >= min_count
    terms = vec.get_feature_names_out()[keep]
    ya, yb = ya[keep], yb[keep]
    delta, z = log_odds_dirichlet(ya, yb, ya + yb)
    table = pd.DataFrame({"term": terms, "count_a": ya.astype(int), "count_b": yb.astype(int),
                          "log_odds": delta, "z": z})
    table = table[table["z"].abs() >= z_min].copy()
    table["side"] = np.where(table["z"] > 0, group_a, group_b)
    table = table.reindex(table["z"].abs().sort_values(ascending=False, kind="stable").index).reset_index(drop=True)
    # examples: the most frequent distinct comments of that side containing the term (as a word sequence)
    Xk = X[:, np.flatnonzero(keep)].tocsc()
    col_of = {t: i for i, t in enumerate(terms)}
    examples = []
    for term, side in zip(table["term"], table["side"]):
        rows = Xk[:, col_of[term]].nonzero()[0]
        w = (wa if side == group_a else wb)[rows]
        order = rows[np.argsort(-w, kind="stable")]
        examples.append([str(texts[i]) for i in order[:n_examples] if (wa if side == group_a else wb)[i] > 0])
    table["examples"] = examples
    return DistinctiveTerms(table, str(group_a), str(group_b), int(wa.sum()), int(wb.sum()),
                            "log-odds with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008)")


# --- display ------------------------------------------------------------------------------------------------

def escape_text(frame: pd.DataFrame, columns: Sequence[str] | None = None, how: str = "html") -> pd.DataFrame:
    """A copy of ``frame`` whose text columns (``columns``, default: all object/string columns) are escaped for
    ``how`` = ``"html"`` (:func:`html_escape`) or ``"markdown"`` (:func:`md_escape`); lists become "; "-joined."""
    if how not in ("html", "markdown"):
        raise KitError(f"escape_text: how must be 'html' or 'markdown', got {shorten(how)}")
    esc = html_escape if how == "html" else md_escape
    out = frame.copy()
    cols = columns if columns is not None else [c for c in out.columns if out[c].dtype == object
                                                 or pd.api.types.is_string_dtype(out[c])]
    for c in cols:
        out[c] = [("" if v is None or (isinstance(v, float) and np.isnan(v)) else
                   esc("; ".join(map(str, v)) if isinstance(v, (list, tuple)) else v)) for v in out[c]]
    return out


# --- emerging themes: what is new in the comments -----------------------------------------------------------

@dataclass
class EmergingThemes:
    """Words that became more frequent in the recent comments than before (``terms``: a
    :class:`DistinctiveTerms` table of the recent side) and the topics of the recent comments that use them
    (``suggested``: :class:`SuggestedThemes`, None when no word stands out)."""

    terms: pd.DataFrame
    suggested: SuggestedThemes | None
    n_recent: int
    n_before: int
    n_comments_with_terms: int

    def summary(self) -> str:
        if self.terms.empty:
            return (f"No word is markedly more frequent in the {self.n_recent:,} recent comments than in the "
                    f"{self.n_before:,} before them.")
        return (f"Words more frequent in the {self.n_recent:,} recent comments than in the {self.n_before:,} before "
                f"them: " + ", ".join(self.terms["term"].head(8)) + f" ({self.n_comments_with_terms:,} recent "
                "comments use one of them).")


def emerging_themes(recent, before, n_terms: int = 40, z_min: float = 3.29, n_themes: int = 3, seed: int = 0,
                    codebook: Codebook | None = None, max_comments: int = MAX_SAMPLE) -> EmergingThemes:
    """Suggested themes among what is *new*: the n-grams distinctive of the ``recent`` comments against the
    ``before`` comments (:func:`distinctive_terms`, log-odds with an informative Dirichlet prior; kept when
    ``z >= z_min``, 3.29 = two-sided 0.1%, at most ``n_terms``), then TF-IDF + NMF (:func:`suggest_themes`,
    ``n_themes`` topics) of those words in the recent comments that contain one of them, so a problem that
    appeared recently and is a small share of all comments still gets its own topic with its top terms and
    three representative comments (whatever else those comments say does not blur the topics). A stable
    vocabulary gives no term and no suggestion."""
    r = _clean_comments(recent)
    b = _clean_comments(before)
    if len(r) == 0 or len(b) == 0:
        return EmergingThemes(pd.DataFrame(columns=["term", "count_a", "count_b", "log_odds", "z", "side",
                                                    "examples"]), None, len(r), len(b), 0)
    texts = pd.concat([r, b], ignore_index=True)
    group = ["recent"] * len(r) + ["before"] * len(b)
    dist = distinctive_terms(texts, group, "recent", "before", z_min=z_min)
    terms = dist.top("recent", n_terms)
    if terms.empty:
        return EmergingThemes(terms, None, len(r), len(b), 0)
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(lowercase=True, strip_accents="unicode", ngram_range=(1, 2),
                          token_pattern=r"(?u)\b\w\w+\b|\b\d\b", vocabulary=list(dict.fromkeys(terms["term"])))
    uses = np.asarray(vec.transform(r.to_numpy(dtype=object)).sum(axis=1)).ravel() > 0
    chosen = r[uses]
    suggested = None
    k = min(n_themes, max(1, len(chosen) // 20))
    if len(chosen) >= 2 * k and k >= 1:
        try:
            suggested = suggest_themes(chosen, n_themes=k, seed=seed, codebook=codebook,
                                       max_comments=max_comments, min_df=1, vocabulary=terms["term"].tolist())
        except KitError:
            suggested = None
    return EmergingThemes(terms, suggested, len(r), len(b), int(uses.sum()))
