"""Drivers from engine aggregates: the cross-product matrix of outcome and attributes per group, and its
Poisson-bootstrap replicates, computed in one pass by the engine.

**Moments.** For the complete rows of a group (listwise deletion, as :func:`helpers.drivers.relative_importance`
does by default) and replicate ``b``: ``n_b = sum w``, ``s_i = sum w x_i``, ``s_ij = sum w x_i x_j`` with
``x_0`` the outcome and ``x_1..x_q`` the drivers. Replicate 0 is the sample itself (``w = 1``); the
correlation matrix is then ``C = S/n - m m'`` (``S = s_ij / n``, ``m = s_i / n``), ``R = D^-1/2 C D^-1/2`` - the
formula of ``helpers.drivers._weighted_corr`` - so the point estimate equals the row-level one. Ratings and
weights are integers, so every sum is an exact integer on every engine.

**Poisson bootstrap** (Hanley & MacGibbon 2006, *Comput. Methods Programs Biomed.* 83(1); Chamandy et al. 2012,
"Estimating uncertainty for massive data streams", Google): instead of drawing n rows with replacement, each row
gets a weight ``w_rb ~ Poisson(1)`` in replicate b, independently. The multinomial counts of the row bootstrap
are Poisson(1) counts conditioned on summing to n; for statistics like correlations the two give the same
intervals up to O(1/n), and the Poisson weights need no coordination between rows, so one pass over the data in
any order or partitioning computes all replicates. The weight is a deterministic function of the row id, the seed
and b: ``h1, h2`` = two 32-bit words of ``md5(row_id || ':' || seed)`` reduced mod the prime ``p = 2^31 - 1``,
``v_b = (h1 + b h2) mod p`` (a 2-universal family: for b != b' the pair (v_b, v_b') is uniform on Z_p^2 when
(h1, h2) is, so a row's weights in two replicates are independent, and rows are independent of each other), and
``w_rb = F^-1((v_b + 0.5) / p)`` by inversion of the Poisson(1) CDF at integer thresholds ``floor(F(k) p)``.
Results therefore do not depend on the engine, the row order or the partitioning.

**Cost, and the answer-sized path.** The per-row weights cost ``rows x (n_boot + 1)`` weighted cross products in
the engine: at 1M customers (1.6M complete responses in 12 months, 200 replicates) 78 s on DuckDB and 461 s on
Spark local[2] here, where the kit's in-memory bootstrap (which draws over distinct rating patterns) took 11 s.
Ratings take few values, so :func:`driver_patterns` (the distinct patterns per group with their row counts, one
GROUP BY) is a sufficient statistic of the rows, and :func:`moments_from_patterns` draws each pattern's weight as
``Poisson(count)`` (the sum of its rows' Poisson(1) weights: the same bootstrap distribution) in numpy.

:func:`driver_importance_from_moments` turns the matrices into the kit's relative importance
(:func:`helpers.drivers.relative_importance_from_corr` for the estimate; the replicate matrices through the same
Shapley/relative-weights code for percentile intervals made to contain the estimate,
:func:`helpers.drivers.consistent_interval`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from helpers.engine.aggregates import as_columns, hash_uint32_sql, where_sql
from helpers.engine.base import Engine, EngineError, quote_ident as q, sql_literal
from helpers.errors import KitError

POISSON_MODULUS = 2_147_483_647  # 2^31 - 1, prime
REPLICATES_TABLE = "_kit_replicates"


def poisson_thresholds(modulus: int = POISSON_MODULUS) -> list[int]:
    """Integer thresholds ``t_k``: a uniform integer ``v`` in [0, modulus) gives weight k when
    ``t_(k-1) <= v < t_k`` (``t_k = floor(F(k) modulus)``, F the Poisson(1) CDF); the last weight takes the rest
    (P(weight > 13) < 1e-11, below the resolution of the modulus)."""
    out, k = [], 0
    while True:
        t = int(np.floor(stats.poisson.cdf(k, 1.0) * modulus))
        if t >= modulus - 1 or (out and t == out[-1]):
            break
        out.append(t)
        k += 1
    return out


def poisson_weight_sql(v_sql: str) -> str:
    """CASE expression mapping the uniform integer ``v_sql`` to its Poisson(1) weight."""
    th = poisson_thresholds()
    cases = " ".join(f"WHEN {v_sql} < {t} THEN {k}" for k, t in enumerate(th))
    return f"(CASE {cases} ELSE {len(th)} END)"


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i, k)]


def driver_moments(engine: Engine, outcome: str, drivers: Sequence[str], by="department", filters=None,
                   start=None, end=None, n_boot: int = 0, seed: int = 0, table: str = "responses",
                   id_column: str = "response_id", date_column: str = "response_date") -> pd.DataFrame:
    """Per group (``by``) and replicate (0 = the sample, 1..n_boot = Poisson-bootstrap replicates): ``n`` and
    the sums ``s_i`` and cross products ``s_i_j`` of ``[outcome, *drivers]`` over the complete rows (module
    docstring), computed by the engine in one pass. ``filters``, ``start``/``end`` (inclusive days of
    ``date_column``) select the rows."""
    drivers = list(drivers)
    cols = [outcome, *drivers]
    if len(set(cols)) != len(cols):
        raise EngineError(f"driver_moments: the outcome and drivers must be distinct columns, got {cols}")
    by_cols = as_columns(by)
    n_boot = int(n_boot)
    if n_boot < 0:
        raise EngineError(f"driver_moments: n_boot must be >= 0, got {n_boot}")
    have = set(engine.columns(table))
    absent = [c for c in [*cols, *by_cols, id_column] if c not in have]
    if absent:
        raise EngineError(f"driver_moments: table {table} has no column(s) {absent}")
    key = f"CAST({q(id_column)} AS VARCHAR) || ':' || {sql_literal(str(int(seed)))}"
    k = len(cols)
    x = [f"CAST({q(c)} AS BIGINT)" for c in cols]
    # each row's values and cross products once; a replicate then only weights them
    xs = ", ".join([f"{x[i]} AS _x{i}" for i in range(k)] + [f"{x[i]} * {x[j]} AS _x{i}_{j}" for i, j in _pairs(k)])
    complete = [f"{q(c)} IS NOT NULL" for c in cols]
    gsel = "".join(f"{q(c)}, " for c in by_cols)
    base = (f"SELECT {gsel}{xs}, {hash_uint32_sql(key, 0)} % {POISSON_MODULUS} AS _h1, "
            f"{hash_uint32_sql(key, 8)} % {POISSON_MODULUS} AS _h2 "
            f"FROM {q(table)} {where_sql(filters, date_column, start, end, extra=complete)}")
    engine.register(REPLICATES_TABLE, pd.DataFrame({"_b": np.arange(n_boot + 1, dtype="int64")}))
    weighted = (f"SELECT _base.*, r._b AS _b, (_h1 + r._b * _h2) % {POISSON_MODULUS} AS _v "
                f"FROM ({base}) AS _base CROSS JOIN {REPLICATES_TABLE} AS r")
    w = f"(CASE WHEN _b = 0 THEN 1 ELSE {poisson_weight_sql('_v')} END)"
    sums = [("_w", "n")] + [(f"_w * _x{i}", f"s_{i}") for i in range(k)] + \
           [(f"_w * _x{i}_{j}", f"s_{i}_{j}") for i, j in _pairs(k)]
    select = ", ".join(f"CAST(sum({expr}) AS BIGINT) AS {name}" for expr, name in sums)
    sql = (f"SELECT {gsel}_b AS replicate, {select} "
           f"FROM (SELECT *, {w} AS _w FROM ({weighted}) AS _r) AS _rw GROUP BY {gsel}_b")
    out = engine.query(sql)
    for c in out.columns[len(by_cols):]:
        out[c] = out[c].astype("int64")
    out = out.sort_values([*by_cols, "replicate"], kind="stable").reset_index(drop=True)
    out.attrs.update(columns=cols, by=by_cols, n_boot=n_boot, seed=int(seed))
    return out


def correlation_stack(moments: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlation matrices (B x k x k) and the n of each row of ``moments`` (one group)."""
    n = moments["n"].to_numpy(dtype=float)
    s = np.stack([moments[f"s_{i}"].to_numpy(dtype=float) for i in range(k)], axis=1)
    SS = np.empty((len(moments), k, k))
    for i, j in _pairs(k):
        SS[:, i, j] = SS[:, j, i] = moments[f"s_{i}_{j}"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s / n[:, None]
        S = SS / n[:, None, None]
        C = S - m[:, :, None] * m[:, None, :]
        sd = np.sqrt(np.clip(np.einsum("bii->bi", C), 0, None))
        R = C / (sd[:, :, None] * sd[:, None, :])
    return R, n


def driver_importance_from_moments(moments: pd.DataFrame, method: str = "shapley", ci: float = 0.95) -> pd.DataFrame:
    """Relative importance per group from :func:`driver_moments`: one row per group and driver with
    ``importance`` (units of R^2), ``share``, ``rank``, ``sign``, ``n``, ``r2`` and, with replicates,
    ``ci_low``/``ci_high`` (importance), ``share_low``/``share_high`` (share of R^2 per replicate), ``r2_low``/
    ``r2_high`` and ``n_boot`` (usable replicates). A group without an analysis (too few rows, a constant
    outcome) or without intervals (fewer than 90% usable replicates, as in :func:`helpers.drivers.relative_importance`)
    is named with the reason in ``attrs["skipped"]``."""
    from helpers.drivers import (NONNEGATIVE_METHODS, _importance_stack,  # noqa: PLC0415
                                 consistent_interval, relative_importance_from_corr)

    cols = list(moments.attrs.get("columns") or [])
    by_cols = list(moments.attrs.get("by") or [])
    if not cols:
        raise EngineError("driver_importance_from_moments: expected the output of driver_moments (attrs['columns'])")
    outcome, drivers, k = cols[0], cols[1:], len(cols)
    alpha = (1 - ci) / 2
    parts, skipped = [], {}
    groups = moments.groupby(by_cols, sort=True, dropna=False) if by_cols else [((), moments)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        R, n = correlation_stack(g, k)
        point = g["replicate"].to_numpy() == 0
        if not point.any():
            raise EngineError("driver_importance_from_moments: replicate 0 (the sample) is missing")
        R0, n0 = R[point][0], int(n[point][0])
        try:
            res = relative_importance_from_corr(pd.DataFrame(R0, index=cols, columns=cols), outcome, drivers,
                                                method=method, n=n0)
        except KitError as exc:  # a constant outcome, too few rows: this group has no analysis, the others do
            skipped[key] = str(exc)
            continue
        t = res.table.copy()
        t["n"], t["r2"] = n0, res.r2
        reps = R[~point]
        if len(reps):
            players = list(t.index)
            idx = [0, *[cols.index(p) for p in players]]
            sub = reps[:, idx][:, :, idx]
            ok = np.all(np.isfinite(sub.reshape(len(sub), -1)), axis=1)
            imp, r2 = _replicate_importances(sub[ok], len(players), res.attrs["method_used"])
            good = np.all(np.isfinite(imp), axis=1) & np.isfinite(r2)
            imp, r2 = imp[good], r2[good]
            if len(imp) < max(10, 0.9 * len(reps)):  # the rule of helpers.drivers' row bootstrap
                skipped[key] = (f"only {len(imp)} of {len(reps)} bootstrap replicates gave a usable model "
                                "(singular in the others): too few responses for intervals")
                t["n_boot"] = int(len(imp))
                parts.append(_with_keys(t.reset_index(), by_cols, key))
                continue
            lo, hi = np.quantile(imp, alpha, axis=0), np.quantile(imp, 1 - alpha, axis=0)
            est = t["importance"].to_numpy(float)
            lo, hi, _ = consistent_interval(est, lo, hi, res.attrs["method_used"] in NONNEGATIVE_METHODS)
            shares = imp / r2[:, None]
            s_lo, s_hi, _ = consistent_interval(t["share"].to_numpy(float), np.quantile(shares, alpha, axis=0),
                                                np.quantile(shares, 1 - alpha, axis=0))
            r2_lo, r2_hi, _ = consistent_interval(res.r2, *np.quantile(r2, [alpha, 1 - alpha]), nonnegative=False)
            t["ci_low"], t["ci_high"], t["share_low"], t["share_high"] = lo, hi, s_lo, s_hi
            t["r2_low"], t["r2_high"], t["n_boot"] = float(r2_lo), float(r2_hi), int(good.sum())
        parts.append(_with_keys(t.reset_index(), by_cols, key))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*by_cols, "driver", "importance"])
    out.attrs["skipped"] = {(k[0] if len(k) == 1 else k): v for k, v in skipped.items()}
    return out


def _with_keys(t: pd.DataFrame, by_cols: list[str], key: tuple) -> pd.DataFrame:
    for i, (c, v) in enumerate(zip(by_cols, key)):
        t.insert(i, c, v)
    return t


def _replicate_importances(corr: np.ndarray, players: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Importances of a stack of replicate matrices; a singular replicate gives NaN (as in the row bootstrap)."""
    from helpers.drivers import _importance_stack  # noqa: PLC0415

    cols = [np.array([i]) for i in range(players)]
    try:
        imp, r2, _ = _importance_stack(corr, cols, method, [False] * players)
        return imp, r2
    except np.linalg.LinAlgError:
        imp, r2 = np.full((len(corr), players), np.nan), np.full(len(corr), np.nan)
        for i in range(len(corr)):
            try:
                a, r, _ = _importance_stack(corr[i], cols, method, [False] * players)
                imp[i], r2[i] = a[0], r[0]
            except np.linalg.LinAlgError:
                pass
        return imp, r2


def replicate_draws(moments: pd.DataFrame, players: Sequence[str], method: str = "shapley") -> tuple[np.ndarray, np.ndarray]:
    """The replicate importances (B x players) and R^2 (B) of one group's :func:`driver_moments` (for tests and
    for comparisons between groups)."""
    from helpers.drivers import _importance_stack  # noqa: PLC0415

    cols = list(moments.attrs["columns"])
    R, _ = correlation_stack(moments, len(cols))
    reps = R[moments["replicate"].to_numpy() > 0]
    idx = [0, *[cols.index(p) for p in players]]
    imp, r2, _ = _importance_stack(reps[:, idx][:, :, idx], [np.array([i]) for i in range(len(players))], method,
                                   [False] * len(players))
    return imp, r2


def driver_patterns(engine: Engine, outcome: str, drivers: Sequence[str], by="department", filters=None,
                    start=None, end=None, table: str = "responses",
                    date_column: str = "response_date") -> pd.DataFrame:
    """Per group: each distinct pattern of ``[outcome, *drivers]`` over the complete rows, with its number of
    rows ``count`` (columns ``x0..xq``). Ratings on 1-5 / 0-10 scales have at most a few thousand patterns per
    group, so this answer-sized table is a sufficient statistic of the rows for the moments and the bootstrap."""
    drivers = list(drivers)
    cols = [outcome, *drivers]
    by_cols = as_columns(by)
    have = set(engine.columns(table))
    absent = [c for c in [*cols, *by_cols] if c not in have]
    if absent:
        raise EngineError(f"driver_patterns: table {table} has no column(s) {absent}")
    xs = [f"CAST({q(c)} AS BIGINT) AS x{i}" for i, c in enumerate(cols)]
    keys = [*[q(c) for c in by_cols], *[f"x{i}" for i in range(len(cols))]]
    complete = [f"{q(c)} IS NOT NULL" for c in cols]
    inner = (f"SELECT {''.join(f'{q(c)}, ' for c in by_cols)}{', '.join(xs)} FROM {q(table)} "
             f"{where_sql(filters, date_column, start, end, extra=complete)}")
    out = engine.query(f"SELECT {', '.join(keys)}, count(*) AS count FROM ({inner}) AS _p GROUP BY {', '.join(keys)}")
    out = out.sort_values([*by_cols, *[f"x{i}" for i in range(len(cols))]], kind="stable").reset_index(drop=True)
    out.attrs.update(columns=cols, by=by_cols)
    return out


def moments_from_patterns(patterns: pd.DataFrame, n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """:func:`driver_moments`' table from :func:`driver_patterns`: replicate 0 from the counts (the same
    integers as the engine's sums), replicates 1..n_boot with pattern weights ``W_pb ~ Poisson(c_p)`` - the sum of
    the Poisson(1) weights of the ``c_p`` rows of pattern p, so the same Poisson bootstrap distribution, drawn per
    pattern instead of per row (numpy, seeded by ``seed`` and the group's name; independent of row order and
    partitioning, but not the same draws as :func:`driver_moments`)."""
    import zlib  # noqa: PLC0415

    cols = list(patterns.attrs["columns"])
    by_cols = list(patterns.attrs["by"])
    k = len(cols)
    parts = []
    groups = patterns.groupby(by_cols, sort=True, dropna=False) if by_cols else [((), patterns)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        X = g[[f"x{i}" for i in range(k)]].to_numpy("int64")
        c = g["count"].to_numpy("int64")
        rng = np.random.default_rng([int(seed), zlib.crc32(repr(key).encode())])
        W = np.vstack([c[None, :], rng.poisson(c, size=(int(n_boot), len(c)))]).astype("int64")
        data = {"replicate": np.arange(n_boot + 1, dtype="int64"), "n": W.sum(axis=1)}
        for i in range(k):
            data[f"s_{i}"] = W @ X[:, i]
        for i, j in _pairs(k):
            data[f"s_{i}_{j}"] = W @ (X[:, i] * X[:, j])
        part = pd.DataFrame(data)
        for i, (col, v) in enumerate(zip(by_cols, key)):
            part.insert(i, col, v)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(columns=cols, by=by_cols, n_boot=int(n_boot), seed=int(seed))
    return out


def rating_patterns(engine: Engine, columns: Sequence[str], filters=None, start=None, end=None,
                    table: str = "responses", date_column: str = "response_date") -> pd.DataFrame:
    """Each distinct pattern of ``columns`` over the selected rows **missing values included** (a missing
    rating is a value of the pattern, NaN here), with its number of rows ``count``; columns ``x0..x(k-1)`` as
    DOUBLE (exact for ratings; any numeric column groups by its exact value). ``filters``, ``start``/``end``
    (inclusive days of ``date_column``) select the rows, as in :func:`driver_patterns`.

    Unlike :func:`driver_patterns` (complete rows only) this table is a sufficient statistic for everything
    a listwise-deletion driver analysis computes from the rows of its selection: which attributes were
    answered at all, the complete rows of any subset of columns (the analysis, the VIF), and each attribute's
    mean over its own answers (the importance-performance map)."""
    cols = list(columns)
    if not cols or len(set(cols)) != len(cols):
        raise EngineError(f"rating_patterns: expected distinct columns, got {cols}")
    have = set(engine.columns(table))
    absent = [c for c in [*cols, *(filters or {})] if c not in have]
    if absent:
        raise EngineError(f"rating_patterns: table {table} has no column(s) {absent}")
    xs = [f"CAST({q(c)} AS DOUBLE) AS x{i}" for i, c in enumerate(cols)]
    keys = [f"x{i}" for i in range(len(cols))]
    inner = f"SELECT {', '.join(xs)} FROM {q(table)} {where_sql(filters, date_column, start, end)}"
    out = engine.query(f"SELECT {', '.join(keys)}, count(*) AS count FROM ({inner}) AS _p GROUP BY {', '.join(keys)}")
    for c in keys:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    out["count"] = out["count"].astype("int64")
    out = out.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)
    out.attrs.update(columns=cols)
    return out
