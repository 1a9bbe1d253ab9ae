"""Drivers of satisfaction: exact relative importance of attribute ratings for an overall rating.

The question is "what should we fix to raise satisfaction?". The answer is a decomposition of the
explained variance R^2 of a linear regression ``outcome ~ drivers`` into one share per driver.

Methods (``method=``), all computed from the (weighted) correlation matrix ``R`` of outcome and drivers,
with ``R_SS`` the drivers' block for a subset ``S`` and ``r_S`` their correlations with the outcome:

* ``"shapley"`` - LMG (Lindeman, Merenda & Gold 1980), Shapley value regression, general dominance
  (Budescu 1993; Azen & Budescu 2003). With ``v(S) = r_S' R_SS^-1 r_S`` the R^2 of subset S,
  ``phi_j = sum_{S not containing j} |S|! (p-|S|-1)! / p! * (v(S u {j}) - v(S))``; the phi_j sum to R^2.
  All 2^p subset R^2 come from sweeping ``R`` one player at a time (one pass over the rows for ``R``,
  then about 6 * 2^p multiply-adds, in blocks of bounded memory; see :func:`_sweep_blocks`), and the
  Shapley sums are accumulated block by block, so no 2^p x k x k array is ever held. Exact up to
  ``max_exact`` drivers (20: about 0.03 s per correlation matrix here); above that the result falls back
  to relative weights and says so (``attrs["exact"] = False``, ``attrs["fallback"]``). The limit is a
  cost choice, not a memory one (the sweep's memory is bounded for any p): each further driver doubles
  the cost, so at 22 drivers even the 200-draw floor of the bootstrap would take about 25 s per analysis.

Cost bound: a fit costs one pass over the rows plus O(2^min(p, 20)); a bootstrap draws at most the
requested number of re-samples within the budget of :func:`bootstrap_draws` (and never fewer than 200),
and states how many it drew and why (``attrs["n_boot"]``, ``attrs["n_boot_reason"]``).
* ``"relative_weights"`` - Johnson (2000): ``R_xx = V L V'``, ``Lambda = V L^1/2 V'``,
  ``beta* = Lambda^-1 r_xy``, ``eps_j = sum_k Lambda_jk^2 beta*_k^2``; sums to R^2.
* ``"first"`` - squared zero-order correlation ``r_j^2`` (R^2 of the driver alone).
* ``"last"`` - ``R^2 - R^2(without j)`` (usefulness, Darlington 1968).
* ``"betasq"`` - squared standardized coefficient ``beta_j^2`` with ``beta = R_xx^-1 r_xy``.
* ``"pratt"`` - ``beta_j * r_j`` (Pratt 1987); sums to R^2, can be negative.

These are the definitions of R's relaimpo ``calc.relimp`` (Groemping 2006, JSS 17(1)), which the tests
reproduce on its published outputs.

Case weights (survey weights) enter the weighted means and covariances. Missing data: ``"listwise"``
(complete cases, relaimpo's default) or ``"pairwise"`` (each correlation from the rows where both values
are present); the choice is stated in the result. A non-numeric driver is a categorical factor: it is
dummy-coded (first level as reference) and entered as a group, so it gets one importance for the whole
factor (relaimpo's ``groups=``). Constant, all-missing and aliased (perfectly collinear) drivers are
dropped and named in ``attrs["dropped"]``; fewer usable rows than drivers + 2 or a non-numeric outcome
raise :class:`DriverInputError`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from helpers.errors import KitError

METHODS = ("shapley", "relative_weights", "first", "last", "betasq", "pratt")
METHOD_ALIASES = {"lmg": "shapley", "shapley_value": "shapley", "dominance": "shapley", "general_dominance": "shapley",
                  "johnson": "relative_weights", "rwa": "relative_weights", "relweights": "relative_weights"}
"""Other names of the methods (``method="lmg"`` is Shapley/LMG, as relaimpo calls it)."""
MISSING = ("listwise", "pairwise")
MAX_EXACT = 20
COLLAPSE_MIN_ROWS = 100_000  # above this many complete rows the bootstrap draws counts of distinct rows
_ALIAS_TOL = 1e-10


class DriverInputError(KitError):
    """The data or arguments given to a driver analysis cannot give a meaningful result.

    The message names the column(s), the number of rows and what was expected.
    """


# ----------------------------------------------------------------------------------------------------
# Design: turning a DataFrame into a numeric matrix and "players" (drivers or groups of dummy columns)
# ----------------------------------------------------------------------------------------------------
@dataclass
class _Design:
    X: np.ndarray                 # n x (1 + q): outcome first, then q numeric driver columns (NaN = missing)
    w: np.ndarray                 # n case weights (>0)
    columns: list[str]            # q driver column names (dummies named "factor[level]")
    players: list[str]            # P player names (driver or factor)
    player_cols: list[np.ndarray]  # for each player, indices into the q columns
    categorical: list[bool]       # per player
    dropped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _as_weights(data: pd.DataFrame, weights) -> np.ndarray:
    if weights is None:
        return np.ones(len(data))
    if isinstance(weights, str):
        if weights not in data.columns:
            raise DriverInputError(f"weights column {weights!r} is not in the data "
                                   f"(columns: {', '.join(map(str, data.columns))})")
        w = pd.to_numeric(data[weights], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(data),):
            raise DriverInputError(f"weights has {w.size} values; expected one per row ({len(data)})")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise DriverInputError(f"weights: {int(bad.sum())} rows are missing, negative or infinite; "
                               "expected non-negative case weights")
    return w


def as_driver_list(drivers) -> list[str]:
    """``drivers`` as a list of names: one name (``"complaints"``) is one driver, not its characters."""
    if drivers is None:
        return []
    if isinstance(drivers, str):
        return [drivers]
    return list(drivers)


def canonical_method(method: str) -> str:
    """The method's name in :data:`METHODS` (``"lmg"`` -> ``"shapley"``; see :data:`METHOD_ALIASES`)."""
    m = METHOD_ALIASES.get(str(method).lower(), method)
    if m not in METHODS:
        raise DriverInputError(f"method={method!r}; expected one of {METHODS} (or an alias: "
                               f"{', '.join(sorted(METHOD_ALIASES))})")
    return m


def _build_design(data: pd.DataFrame, outcome: str, drivers, weights, missing: str) -> _Design:
    if not isinstance(data, pd.DataFrame):
        raise DriverInputError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if missing not in MISSING:
        raise DriverInputError(f"missing={missing!r}; expected one of {MISSING}")
    drivers = as_driver_list(drivers)
    if not drivers:
        raise DriverInputError("no drivers given; expected at least one driver column")
    if len(set(drivers)) != len(drivers):
        raise DriverInputError(f"drivers are listed twice: {sorted({d for d in drivers if drivers.count(d) > 1})}")
    absent = [c for c in [outcome, *drivers] if c not in data.columns]
    if absent:
        raise DriverInputError(f"columns not in the data: {absent}; available: {list(map(str, data.columns))}")
    if outcome in drivers:
        raise DriverInputError(f"the outcome {outcome!r} is also listed as a driver")
    y_raw = data[outcome]
    if not (pd.api.types.is_numeric_dtype(y_raw) or pd.api.types.is_bool_dtype(y_raw)):
        raise DriverInputError(f"outcome {outcome!r} has dtype {y_raw.dtype}; expected a numeric rating "
                               "(e.g. csat 1-5 or nps 0-10)")
    w = _as_weights(data, weights)
    is_num = {d: pd.api.types.is_numeric_dtype(data[d]) or pd.api.types.is_bool_dtype(data[d]) for d in drivers}
    numeric = [d for d in drivers if is_num[d]]
    # one block copy for the outcome and all numeric drivers
    Xnum = data[[outcome, *numeric]].to_numpy(dtype=float, na_value=np.nan)
    # column sums are finite exactly when a column has no missing (or infinite) value: the common
    # complete-data case then needs no missing-value mask at all
    complete = bool(np.all(np.isfinite(Xnum.sum(axis=0))))
    nanmask = None if complete else ~np.isfinite(Xnum)
    if nanmask is not None and nanmask[:, 0].all():
        raise DriverInputError(f"outcome {outcome!r} is missing in all {len(Xnum)} rows")
    allmiss = dict(zip(numeric, nanmask[:, 1:].all(axis=0) if nanmask is not None else [False] * len(numeric)))
    pos_num = {d: i + 1 for i, d in enumerate(numeric)}

    cols, blocks, players, pcols, categorical, dropped = [], [], [], [], [], {}
    num_sel = [0]
    for d in drivers:
        if is_num[d]:
            if allmiss[d]:
                dropped[d] = "all values missing"
                continue
            players.append(d)
            pcols.append(np.array([len(cols)]))
            cols.append(d)
            num_sel.append(pos_num[d])
            categorical.append(False)
            continue
        s = data[d]
        if s.isna().all():
            dropped[d] = "all values missing"
            continue
        levels = sorted(pd.unique(s.dropna().astype(str)))
        if len(levels) < 2:
            dropped[d] = f"categorical with a single level ({levels[0]!r})"
            continue
        codes = s.astype("string")
        miss = codes.isna().to_numpy()
        block = np.empty((len(s), len(levels) - 1))
        names = []
        for k, lev in enumerate(levels[1:]):
            block[:, k] = (codes == lev).fillna(False).to_numpy(dtype=float)
            names.append(f"{d}[{lev}]")
        block[miss, :] = np.nan
        players.append(d)
        pcols.append(np.arange(len(cols), len(cols) + len(names)))
        cols.extend(names)
        blocks.append((len(num_sel) - 1, block))  # inserted after the numeric columns seen so far
        categorical.append(True)
    if not players:
        raise DriverInputError(f"none of the drivers {drivers} is usable: {dropped}")
    if not blocks:
        X = Xnum if num_sel == list(range(Xnum.shape[1])) else Xnum[:, num_sel]
        if nanmask is None:
            miss_rows = np.zeros(len(X), dtype=bool)
        else:
            miss_rows = nanmask[:, num_sel].any(axis=1) if missing == "listwise" else nanmask[:, 0]
    else:
        parts, last = [], 0
        for after, block in blocks:
            parts.append(Xnum[:, num_sel[last:after + 1]])
            parts.append(block)
            last = after + 1
        parts.append(Xnum[:, num_sel[last:]])
        X = np.column_stack(parts)
        if missing == "listwise":
            miss_rows = np.isnan(X).any(axis=1)
        else:
            miss_rows = nanmask[:, 0] if nanmask is not None else np.zeros(len(X), dtype=bool)
    if nanmask is not None:  # infinite values count as missing
        inf = np.isinf(X)
        if inf.any():
            X = np.where(inf, np.nan, X)
            if missing == "listwise":
                miss_rows = np.isnan(X).any(axis=1)
    keep = ~miss_rows
    if not np.all(w > 0):
        keep &= w > 0
    if not keep.all():
        X, w = X[keep], w[keep]
    return _Design(X=X, w=w, columns=cols, players=players, player_cols=pcols, categorical=categorical,
                   dropped=dropped)


# ----------------------------------------------------------------------------------------------------
# Weighted correlation matrices (single or a stack of bootstrap replicates)
# ----------------------------------------------------------------------------------------------------
def _weighted_corr(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Pearson correlation of the columns of a complete matrix X, and the column SDs.

    ``m = sum w x / sum w``, ``C = (X - m)' diag(w) (X - m) / sum w``, ``R = D^-1/2 C D^-1/2``.
    Unweighted data take one pass: ``C = X'X/n - m m'`` (a single BLAS product on the uncentred data),
    recomputed on centred data when the means are so large relative to the SDs that more than 6 of the
    16 digits would cancel.
    """
    unweighted = bool(np.all(w == w[0]))
    if unweighted:
        n = X.shape[0]
        m = X.sum(axis=0) / n
        S = (X.T @ X) / n
        C = S - np.outer(m, m)
        d = np.diag(C)
        if np.all(d > 0) and np.all(np.diag(S) / d < 1e6):
            sd = np.sqrt(d)
            return C / np.outer(sd, sd), sd
        Xc = X - m
        C = (Xc.T @ Xc) / n
    else:
        sw = w.sum()
        m = (w @ X) / sw
        Xc = X - m
        C = (Xc * w[:, None]).T @ Xc / sw
    sd = np.sqrt(np.clip(np.diag(C), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        R = C / np.outer(sd, sd)
    return R, sd


def _pairwise_corr_stack(X: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted pairwise-complete correlations for a stack of weight vectors.

    ``X`` is n x k with NaN for missing, ``W`` is B x n (replicate weights). For each pair (i, j) the
    moments use only rows where both are present: with M the presence mask and Xz = X with 0 for NaN,
    ``N_ij = W (M_i M_j)``, ``S_ij = W (Xz_i M_j)``, ``Q_ij = W (Xz_i^2 M_j)``, ``P_ij = W (Xz_i Xz_j)``;
    ``cov_ij = P/N - (S_ij/N)(S_ji/N)``, ``var_i|j = Q_ij/N - (S_ij/N)^2``. Computed as matrix products
    (one GEMM per moment), so B replicates cost about as much as a few passes over the data.
    Returns (R of shape B x k x k, N of shape B x k x k).
    """
    n, k = X.shape
    M = ~np.isnan(X)
    # centre by the overall weighted means to limit cancellation in the raw moments
    mu = np.nanmean(X, axis=0)
    Xz = np.where(M, X - mu, 0.0)
    Mf = M.astype(float)
    B = W.shape[0]
    N = np.zeros((B, k * k))
    S = np.zeros((B, k * k))
    Q = np.zeros((B, k * k))
    P = np.zeros((B, k * k))
    step = max(1, int(4_000_000 // max(k * k, 1)))
    for a in range(0, n, step):
        sl = slice(a, min(n, a + step))
        m_, x_ = Mf[sl], Xz[sl]
        Wb = W[:, sl]
        N += Wb @ (m_[:, :, None] * m_[:, None, :]).reshape(-1, k * k)
        S += Wb @ (x_[:, :, None] * m_[:, None, :]).reshape(-1, k * k)
        Q += Wb @ ((x_ ** 2)[:, :, None] * m_[:, None, :]).reshape(-1, k * k)
        P += Wb @ (x_[:, :, None] * x_[:, None, :]).reshape(-1, k * k)
    N, S, Q, P = (a.reshape(B, k, k) for a in (N, S, Q, P))
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = S / N
        mj = np.swapaxes(S, 1, 2) / N
        cov = P / N - mi * mj
        vi = Q / N - mi ** 2
        vj = np.swapaxes(Q, 1, 2) / N - mj ** 2
        R = cov / np.sqrt(vi * vj)
    idx = np.arange(k)
    R[:, idx, idx] = 1.0
    return R, N


def _complete_corr_stack(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Weighted correlations of a complete matrix X for a stack of replicate weights W (B x n).

    Means for all replicates in one product ``W @ Xc`` of the centred data. Second moments: for many
    replicates one GEMM ``W @ (x_i x_j)`` over row chunks of the products (4M elements at a time); for
    a few replicates (large data, where W holds few rows) one product ``Xc' (w * Xc)`` per replicate.
    """
    n, k = X.shape
    Xc = X - X.mean(axis=0)
    B = W.shape[0]
    S0 = W.sum(axis=1)
    S1 = W @ Xc
    if B < 32:
        S2 = np.empty((B, k, k))
        for b in range(B):
            S2[b] = Xc.T @ (Xc * W[b][:, None])
    else:
        S2 = np.zeros((B, k * k))
        step = max(1, int(4_000_000 // max(k * k, 1)))
        for a in range(0, n, step):
            x_ = Xc[a:a + step]
            S2 += W[:, a:a + step] @ (x_[:, :, None] * x_[:, None, :]).reshape(-1, k * k)
        S2 = S2.reshape(B, k, k)
    m = S1 / S0[:, None]
    C = S2 / S0[:, None, None] - m[:, :, None] * m[:, None, :]
    sd = np.sqrt(np.clip(np.einsum("bii->bi", C), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return C / (sd[:, :, None] * sd[:, None, :])


# ----------------------------------------------------------------------------------------------------
# The engine on correlation matrices (stacked: leading axis = replicate)
# ----------------------------------------------------------------------------------------------------
def _popcount(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.asarray(a, dtype=np.int64)).astype(np.int64)


# --- exact subset R^2 by sweeping the players one at a time -------------------------------------------
# A state matrix is stored packed (upper triangle, row-major) with the entries first and the states last,
# shape (m(m+1)/2, b, s), so every update is a long contiguous vector operation. Layout of the m x m
# matrix: the remaining players' driver columns in order, then the outcome last. The outcome's diagonal
# entry starts at 0 instead of 1, so after sweeping the columns of a subset S it holds -R^2(S) exactly
# (no 1 - (1 - R^2) cancellation); the driver block holds the residual correlations given S.
SWEEP_BUDGET = 16_000_000  # float64 elements (128 MB) live at once in the sweep, whatever p and B
_PIVOT_TINY = 1e-14        # a residual variance below this (correlation units) is a singular subset


@functools.lru_cache(maxsize=256)
def _tri_index(m: int) -> np.ndarray:
    """Position of entry (i, j) of a symmetric m x m matrix in the packed upper triangle (i <= j)."""
    idx = np.zeros((m, m), dtype=np.intp)
    i, j = np.triu_indices(m)
    idx[i, j] = np.arange(len(i))
    idx[j, i] = idx[i, j]
    return idx


@functools.lru_cache(maxsize=256)
def _tri_plan(m: int, c: int):
    """Index arrays to drop the first c rows/columns of a packed m x m matrix (``keep``), and for a sweep
    of the first one: its row ``first`` and, for each kept entry, the two row positions (``ai``, ``aj``)."""
    idx = _tri_index(m)
    i, j = np.triu_indices(m - c)
    keep = idx[i + c, j + c]
    first = idx[0, 1:]
    return keep, first, i + c - 1, j + c - 1


def _sweep_one(E: np.ndarray, m: int) -> np.ndarray:
    """Sweep the first column of packed matrices E (tri(m), b, s): ``M[1:,1:] - a a' / a_00``."""
    keep, first, ai, aj = _tri_plan(m, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        piv = E[0]
        a = E[first] / np.sqrt(np.where(piv > _PIVOT_TINY, piv, np.nan))
        return E[keep] - a[ai] * a[aj]


def _sweep_level(E: np.ndarray, m: int, c: int) -> np.ndarray:
    """One player decided for every state: ``E`` is (tri(m), b, s) with the player's c columns first.
    Returns (tri(m-c), b, 2s): the states without the player (its rows/columns removed), then with it
    (its columns swept: ``M - a a' / a_jj`` per column; Goodnight 1979, "A tutorial on the SWEEP operator")."""
    _, b, s = E.shape
    keep, first, ai, aj = _tri_plan(m, c)
    out = np.empty((len(keep), b, 2 * s))
    without, with_ = out[:, :, :s], out[:, :, s:]
    np.take(E, keep, axis=0, out=without)
    if c == 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            piv = E[0]
            a = E[first] / np.sqrt(np.where(piv > _PIVOT_TINY, piv, np.nan))
        np.multiply(a[ai], a[aj], out=with_)
        np.subtract(without, with_, out=with_)
    else:
        T = E
        for k in range(c):
            T = _sweep_one(T, m - k)
        with_[...] = T
    return out


def _tri(m: int) -> int:
    return m * (m + 1) // 2


def _sweep_plan(counts: list[int], B: int, budget: int) -> tuple[int, int, int]:
    """(replicates per batch b, split level h, states per block g) so that about ``budget`` elements at
    most are live: the first h players are swept for all 2^h states, then blocks of g of those states are
    swept through the remaining players (each block ends as g * 2^(P-h) subset values)."""
    P = len(counts)
    m = [1 + sum(counts[l:]) for l in range(P + 1)]

    def peak(h):  # elements per replicate and per state from level h on (input, output, temporaries)
        if h == P:
            return 1
        return max((_tri(m[l]) + 4 * _tri(m[l + 1])) * 2 ** (l - h) for l in range(h, P))

    def need(h):  # elements for one block of one state from level h on, or for all level-h states
        return max(peak(h), 4 * 2 ** h * _tri(m[h]))

    if peak(0) <= budget:
        return max(1, min(B, budget // peak(0))), 0, 1
    # the smallest split level at which both fit; for a budget too small for any, the one needing least
    fitting = [h for h in range(P + 1) if need(h) <= budget]
    h = fitting[0] if fitting else min(range(P + 1), key=need)
    g = 1
    while 2 * g <= 2 ** h and 2 * g * peak(h) <= budget:
        g *= 2
    return 1, h, g


def _sweep_blocks(corr: np.ndarray, player_cols: list[np.ndarray], budget: int = SWEEP_BUDGET):
    """Yield ``(rows, h, s0, g, v)``: for replicates ``rows`` (a slice), ``v`` (b x g*2^(P-h)) holds the
    R^2 of the subsets ``(s0 + j) + 2^h * t`` at position ``j + g*t`` (bit i of a mask = player i).

    All 2^P subset R^2 of a correlation matrix by sweeping the players one after the other: each state
    (a subset of the players decided so far) splits into "without" and "with" the next player, and the
    sweep of the next player's columns (a rank-one update per column) gives the residual correlations of
    the remaining columns and the outcome given the subset. A subset's R^2 costs O(1) amortised updates of
    size (remaining columns)^2, about 6 * 2^P multiply-adds in all (packed), instead of a k x k solve per
    subset. Memory is bounded by ``budget`` elements: replicates are taken in batches and, for large P, the
    states after the first h players are swept through the rest in blocks of g states."""
    corr = np.asarray(corr, dtype=float)
    if corr.ndim == 2:
        corr = corr[None]
    B = corr.shape[0]
    counts = [len(c) for c in player_cols]
    P = len(counts)
    order = np.concatenate([np.asarray(c, dtype=int) + 1 for c in player_cols] + [np.array([0])])
    m0 = len(order)
    iu, ju = np.triu_indices(m0)
    b, h, g = _sweep_plan(counts, B, budget)
    for a in range(0, B, b):
        rows = slice(a, min(B, a + b))
        full = corr[rows][:, order[:, None], order[None, :]].copy()
        full[:, -1, -1] = 0.0
        E = np.ascontiguousarray(full[:, iu, ju].T)[:, :, None]   # (tri, b, 1)
        m = m0
        for l in range(h):
            E = _sweep_level(E, m, counts[l])
            m -= counts[l]
        for s0 in range(0, 2 ** h, g):
            X, mx = E[:, :, s0:s0 + g], m
            for l in range(h, P):
                X = _sweep_level(X, mx, counts[l])
                mx -= counts[l]
            yield rows, h, s0, g, -X[0]


def subset_r2(corr: np.ndarray, player_cols: list[np.ndarray], budget: int = SWEEP_BUDGET) -> np.ndarray:
    """R^2 of every subset of players, from correlation matrices with the outcome in row/column 0.

    ``corr`` is (q+1) x (q+1) or a stack B x (q+1) x (q+1); ``player_cols[i]`` are the driver columns
    (0-based, excluding the outcome) of player i. Returns v of shape (B, 2^P) with
    ``v[:, mask] = r_S' R_SS^-1 r_S`` where S is the union of the columns of the players in ``mask``
    (bit i = player i). Computed by the sweep of :func:`_sweep_blocks`; a singular subset gives NaN.
    """
    corr = np.asarray(corr, dtype=float)
    B = 1 if corr.ndim == 2 else corr.shape[0]
    P = len(player_cols)
    v = np.empty((B, 1 << P))
    for rows, h, s0, g, vb in _sweep_blocks(corr, player_cols, budget):
        masks = (s0 + np.arange(g))[None, :] + (np.arange(1 << (P - h)) << h)[:, None]
        v[rows, masks.ravel()] = vb
    return v


def _subset_r2_solve(corr: np.ndarray, player_cols: list[np.ndarray], chunk_elems: int = 4_000_000) -> np.ndarray:
    """The former engine (kept as the benchmark's baseline and as an independent check of the sweep): every
    subset's R^2 by a batched ``numpy.linalg.solve`` of its k x k system, all subsets materialised at once."""
    corr = np.asarray(corr, dtype=float)
    if corr.ndim == 2:
        corr = corr[None]
    B = corr.shape[0]
    Rxx = corr[:, 1:, 1:]
    rxy = corr[:, 1:, 0]
    P = len(player_cols)
    q = Rxx.shape[1]
    masks = np.arange(1 << P)
    colsel = np.zeros((1 << P, q), dtype=bool)
    for i, cols in enumerate(player_cols):
        has = (masks >> i) & 1 == 1
        colsel[np.ix_(has, cols)] = True
    ncols = colsel.sum(axis=1)
    v = np.zeros((B, 1 << P))
    for k in np.unique(ncols):
        if k == 0:
            continue
        idx = np.nonzero(ncols == k)[0]
        cols = np.nonzero(colsel[idx])[1].reshape(len(idx), k)
        step = max(1, int(chunk_elems // max(B * k * k, 1)))
        for a in range(0, len(idx), step):
            c = cols[a:a + step]
            A = Rxx[:, c[:, :, None], c[:, None, :]]       # B x m x k x k
            b = rxy[:, c]                                  # B x m x k
            sol = np.linalg.solve(A, b[..., None])[..., 0]
            v[:, idx[a:a + step]] = np.einsum("bmk,bmk->bm", b, sol)
    return v


def _shapley_weights(P: int) -> np.ndarray:
    return np.array([math.factorial(s) * math.factorial(P - s - 1) / math.factorial(P) for s in range(P)])


@functools.lru_cache(maxsize=4)
def _shapley_block_coefs(P: int, h: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block of :func:`_sweep_blocks`: the coefficient of v(S) in ``sum_{S contains j} u(S)``
    (``w(|S|-1) + w(|S|)``) and in the constant ``sum_S w(|S|) v(S)``, laid out (blocks, 2^(P-h), g), and
    the prefix bits (2^h, h)."""
    w = _shapley_weights(P)
    w_at = np.concatenate([w, [0.0]])                 # w(|S|), 0 for the full set
    w_before = np.concatenate([[0.0], w])             # w(|S|-1), 0 for the empty set
    L = P - h
    pre = np.arange(2 ** h)
    size = _popcount(np.arange(2 ** L))[None, :, None] + _popcount(pre).reshape(-1, 1, g)
    bits = ((pre[:, None] >> np.arange(h)) & 1).astype(float)
    return (w_before + w_at)[size], w_at[size], bits


def _shapley_sweep(corr: np.ndarray, player_cols: list[np.ndarray], budget: int = SWEEP_BUDGET) -> np.ndarray:
    """Exact Shapley values (B x P) of the R^2 game without materialising v:
    ``phi_j = sum_{S not containing j} w(|S|) (v(S+j) - v(S)) = sum_{S containing j} (w(|S|-1) + w(|S|)) v(S)
    - sum_S w(|S|) v(S)`` with ``w(s) = s!(P-s-1)!/P!``, accumulated block by block from the sweep."""
    corr = np.asarray(corr, dtype=float)
    if corr.ndim == 2:
        corr = corr[None]
    B, P = corr.shape[0], len(player_cols)
    phi = np.zeros((B, P))
    const = np.zeros(B)
    for rows, h, s0, g, v in _sweep_blocks(corr, player_cols, budget):
        coef, wconst, bits = _shapley_block_coefs(P, h, g)
        k = s0 // g
        L = P - h
        b = v.shape[0]
        x = v.reshape(b, 2 ** L, g)
        const[rows] += np.einsum("btg,tg->b", x, wconst[k])
        y = x * coef[k]
        for i in reversed(range(L)):  # fold the highest remaining bit: player h + i
            y = y.reshape(b, 2, -1, g)
            phi[rows, h + i] += y[:, 1].sum(axis=(1, 2))
            y = y[:, 0] + y[:, 1]
        if h:
            phi[rows, :h] += y.reshape(b, g) @ bits[s0:s0 + g]
    return phi - const[:, None]


def shapley_from_subsets(v: np.ndarray) -> np.ndarray:
    """Shapley values (B x P) from subset values v (B x 2^P):
    ``phi_j = sum_{S not containing j} |S|!(P-|S|-1)!/P! (v(S+j) - v(S))``."""
    v = np.atleast_2d(v)
    P = int(round(math.log2(v.shape[1])))
    masks = np.arange(1 << P)
    size = _popcount(masks)
    wts = _shapley_weights(P)
    phi = np.empty((v.shape[0], P))
    for j in range(P):
        m = masks[(masks >> j) & 1 == 0]
        phi[:, j] = (v[:, m | (1 << j)] - v[:, m]) @ wts[size[m]]
    return phi


def conditional_dominance_from_subsets(v: np.ndarray) -> np.ndarray:
    """Average increment of R^2 from adding player j to subsets of size s (Azen & Budescu 2003):
    returns (P x P): row j, column s = mean over |S| = s, j not in S of v(S+j) - v(S)."""
    v = np.asarray(v).reshape(-1)
    P = int(round(math.log2(v.size)))
    masks = np.arange(1 << P)
    size = _popcount(masks)
    out = np.empty((P, P))
    for j in range(P):
        m = masks[(masks >> j) & 1 == 0]
        inc = v[m | (1 << j)] - v[m]
        for s in range(P):
            out[j, s] = inc[size[m] == s].mean()
    return out


def _sym_sqrt(Rxx: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(Rxx)
    vals = np.clip(vals, 0, None)
    return (vecs * np.sqrt(vals)[..., None, :]) @ np.swapaxes(vecs, -1, -2)


def _relative_weights_cols(corr: np.ndarray) -> np.ndarray:
    """Johnson's (2000) raw relative weights per driver column (B x q)."""
    Rxx = corr[:, 1:, 1:]
    rxy = corr[:, 1:, 0]
    Lam = _sym_sqrt(Rxx)
    beta_star = np.linalg.solve(Lam, rxy[..., None])[..., 0]
    return np.einsum("bjk,bk->bj", Lam ** 2, beta_star ** 2)


def _importance_stack(corr: np.ndarray, player_cols: list[np.ndarray], method: str,
                      categorical: list[bool], max_exact: int = MAX_EXACT) -> tuple[np.ndarray, np.ndarray, dict]:
    """Importance per player for a stack of correlation matrices. Returns (imp B x P, r2 B, info)."""
    corr = np.asarray(corr, dtype=float)
    if corr.ndim == 2:
        corr = corr[None]
    Rxx = corr[:, 1:, 1:]
    rxy = corr[:, 1:, 0]
    beta = np.linalg.solve(Rxx, rxy[..., None])[..., 0]
    r2 = np.einsum("bj,bj->b", beta, rxy)
    P = len(player_cols)
    info = {"exact": True, "fallback": None, "method_used": method}
    if method == "shapley" and P > max_exact:
        info.update(exact=False, method_used="relative_weights",
                    fallback=f"{P} drivers exceed the exact Shapley limit of {max_exact}; "
                             "relative weights (Johnson 2000) used instead")
        method = "relative_weights"
    if method in ("betasq", "pratt") and any(categorical):
        names = [i for i, c in enumerate(categorical) if c]
        raise DriverInputError(f"method {method!r} is not defined for a categorical driver entered as a group "
                               f"(player positions {names}); use 'shapley', 'relative_weights', 'first' or 'last'")
    if method == "shapley":
        imp = _shapley_sweep(corr, player_cols)
    elif method == "relative_weights":
        rw = _relative_weights_cols(corr)
        imp = np.stack([rw[:, cols].sum(axis=1) for cols in player_cols], axis=1)
    elif method == "first":
        imp = np.empty((corr.shape[0], P))
        for i, cols in enumerate(player_cols):
            imp[:, i] = subset_r2(corr, [cols])[:, 1]
    elif method == "last":
        imp = np.empty((corr.shape[0], P))
        q = Rxx.shape[1]
        for i, cols in enumerate(player_cols):
            rest = np.setdiff1d(np.arange(q), cols)
            imp[:, i] = r2 - (subset_r2(corr, [rest])[:, 1] if rest.size else 0.0)
    elif method == "betasq":
        imp = np.stack([beta[:, cols[0]] ** 2 for cols in player_cols], axis=1)
    elif method == "pratt":
        imp = np.stack([beta[:, cols[0]] * rxy[:, cols[0]] for cols in player_cols], axis=1)
    else:
        raise DriverInputError(f"method={method!r}; expected one of {METHODS}")
    return imp, r2, info


def _player_signs(corr: np.ndarray, player_cols, categorical) -> np.ndarray:
    Rxx = corr[1:, 1:]
    beta = np.linalg.solve(Rxx, corr[1:, 0])
    return np.array([0.0 if cat else float(np.sign(beta[c[0]])) for c, cat in zip(player_cols, categorical)])


# ----------------------------------------------------------------------------------------------------
# Cleaning: constant and aliased drivers
# ----------------------------------------------------------------------------------------------------
def _drop_degenerate(corr: np.ndarray, design: _Design, sd: np.ndarray) -> tuple[np.ndarray, _Design]:
    """Drop constant columns, then aliased players (R^2 on the previously kept columns > 1 - 1e-10,
    as R's ``lm`` gives NA coefficients), in the order given. Returns the reduced correlation matrix."""
    q = len(design.columns)
    keep_players = []
    kept_cols: list[int] = []
    for i, (name, cols) in enumerate(zip(design.players, design.player_cols)):
        if np.any(~np.isfinite(sd[1 + cols])) or np.any(sd[1 + cols] <= 1e-12 * max(1.0, np.nanmax(sd))):
            design.dropped[name] = "constant (no variation)"
            continue
        if kept_cols:
            A = corr[1:, 1:][np.ix_(kept_cols, kept_cols)]
            ok = True
            for c in cols:
                b = corr[1:, 1:][kept_cols, c]
                try:
                    r2 = b @ np.linalg.solve(A, b)
                except np.linalg.LinAlgError:
                    r2 = 1.0
                if r2 > 1 - _ALIAS_TOL:
                    ok = False
            if ok and len(cols) > 1:
                B_ = corr[1:, 1:][np.ix_(list(cols), list(cols))]
                ok = np.linalg.eigvalsh(B_).min() > _ALIAS_TOL
            if not ok:
                design.dropped[name] = "aliased: a perfect linear combination of drivers kept before it"
                continue
        elif len(cols) > 1 and np.linalg.eigvalsh(corr[1:, 1:][np.ix_(list(cols), list(cols))]).min() <= _ALIAS_TOL:
            design.dropped[name] = "aliased: its levels are perfectly collinear"
            continue
        keep_players.append(i)
        kept_cols.extend(int(c) for c in cols)
    if not keep_players:
        raise DriverInputError(f"no usable driver left: {design.dropped}")
    new_cols, new_pcols, pos = [], [], 0
    for i in keep_players:
        cols = design.player_cols[i]
        new_cols.extend(design.columns[c] for c in cols)
        new_pcols.append(np.arange(pos, pos + len(cols)))
        pos += len(cols)
    sel = np.array([0] + [1 + c for i in keep_players for c in design.player_cols[i]])
    corr = corr[np.ix_(sel, sel)]
    if design.X.shape[1] != len(sel) or np.any(sel != np.arange(len(sel))):
        design.X = design.X[:, sel]
    design.columns = new_cols
    design.players = [design.players[i] for i in keep_players]
    design.categorical = [design.categorical[i] for i in keep_players]
    design.player_cols = new_pcols
    assert len(new_cols) <= q
    return corr, design


def _corr_of_design(design: _Design, missing: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Correlation matrix, SDs and the n behind it (pairwise: the smallest pairwise n)."""
    X, w = design.X, design.w
    if missing == "listwise" or not np.isnan(X).any():
        R, sd = _weighted_corr(X, w)
        return R, sd, X.shape[0]
    R, _ = _pairwise_corr_stack(X, w[None])
    M = ~np.isnan(X)
    npair = (M.astype(float).T @ M.astype(float))
    sd = np.sqrt(np.nanvar(X, axis=0))
    return R[0], sd, int(npair.min())


# ----------------------------------------------------------------------------------------------------
# Cost bound of the bootstrap, and intervals consistent with their estimate
# ----------------------------------------------------------------------------------------------------
MIN_BOOT = 200                # fewer re-samples than this are never chosen (unless fewer were asked for)
BOOT_SUBSET_BUDGET = 2 ** 28  # subset R^2 evaluations per bootstrap (exact Shapley): ~9 s CPU here
BOOT_ROW_BUDGET = 2e11        # rows x (columns + 1)^2 multiply-adds per bootstrap (replicate correlations)
NONNEGATIVE_METHODS = ("shapley", "relative_weights", "first", "last", "betasq")


def bootstrap_draws(n_boot: int, players: int, rows: int, columns: int, method_used: str = "shapley",
                    missing: str = "listwise") -> tuple[int, str]:
    """How many bootstrap re-samples an analysis draws, and why: ``(n_used, reason)``, reason "" when all
    ``n_boot`` requested are drawn.

    Cost bound. One replicate costs ``rows * (columns + 1)^2`` multiply-adds for its correlation matrix
    (4x for pairwise deletion) plus, for exact Shapley, the R^2 of all ``2^players`` subsets (about 30 ns
    each here with the sweep). The draws are capped so that a bootstrap stays within
    ``BOOT_SUBSET_BUDGET`` subset evaluations (2^28: about 9 s CPU on this machine) and
    ``BOOT_ROW_BUDGET`` row products (2e11), but never below ``MIN_BOOT`` (200) re-samples: a 95% percentile
    interval needs its 2.5% tails resolved by several draws. With at most 2^20 subsets per replicate
    (``MAX_EXACT``) an analysis therefore costs at most max(budget, 200 replicates). Deterministic (no clock),
    so a report is reproducible on any machine. Fewer than 200 requested are drawn as asked.
    """
    n_boot = int(n_boot)
    if n_boot <= MIN_BOOT:
        return n_boot, ""
    subsets = 2 ** players if method_used == "shapley" else 0
    row_work = float(rows) * (columns + 1) ** 2 * (4 if missing == "pairwise" else 1)
    cap_subsets = BOOT_SUBSET_BUDGET // subsets if subsets else n_boot
    cap_rows = int(BOOT_ROW_BUDGET // row_work) if row_work else n_boot
    n_used = min(n_boot, max(MIN_BOOT, min(cap_subsets, cap_rows)))
    if n_used == n_boot:
        return n_boot, ""
    if cap_subsets <= cap_rows:
        why = (f"with {players} attributes each re-sample computes the R² of {subsets:,} attribute subsets, "
               f"and an analysis is bounded to about {BOOT_SUBSET_BUDGET:,} subset evaluations")
    else:
        why = (f"each re-sample recomputes the correlations of {columns} attribute columns over {rows:,} responses, "
               f"and an analysis is bounded to about {BOOT_ROW_BUDGET:,.0f} row operations")
    return n_used, f"{n_used} of the {n_boot} requested bootstrap re-samples were drawn: {why}"


def consistent_interval(est, low, high, nonnegative: bool = True):
    """A bootstrap interval made to contain its estimate: ``(low, high, at_zero)``.

    A percentile interval (and BCa) of a statistic that cannot be negative lies entirely above the estimate
    when the estimate is near 0 (an attribute that barely matters): in the sample a noise attribute still
    explains a little R^2, and each re-sample adds its own chance fit, so the re-sampled values sit above the
    estimate. The bootstrap is not consistent for a parameter on the boundary of its space (Andrews 2000,
    Econometrica 68(2)), and BCa cannot repair it (its bias correction ``z0 = Phi^-1(share of draws below
    the estimate)`` is -infinity when none is). Such an importance cannot be told apart from zero, so its
    interval is reported as ``[0, upper]`` (``at_zero`` True). For a signed statistic (Pratt) the interval
    is extended to the estimate instead. Intervals that contain the estimate are returned unchanged.
    """
    est, low, high = (np.asarray(a, dtype=float) for a in (est, low, high))
    above = low > est
    low = np.where(above, 0.0 if nonnegative else est, low)
    high = np.where(high < est, est, high)
    at_zero = above if nonnegative else np.zeros_like(above)
    return low, high, at_zero


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------

def importance_table(corr, design, method: str, max_exact: int):
    """``(table, importance, r2, info)`` of one correlation matrix: each player's importance, its share of R²,
    rank, sign and signed importance (the table ``relative_importance`` returns before intervals); raises
    :class:`DriverInputError` when the matrix is singular. Shared by the row path and the pattern path
    (:func:`helpers.drivers_analysis.analyze_drivers_from_patterns`)."""
    imp, r2, info = _importance_stack(corr, design.player_cols, method, design.categorical, max_exact)
    imp, r2 = imp[0], float(r2[0])
    if not np.all(np.isfinite(imp)) or not np.isfinite(r2):
        raise DriverInputError("the importances could not be computed (singular correlation matrix); "
                               f"check drivers {design.players} for collinearity")
    signs = _player_signs(corr, design.player_cols, design.categorical)
    table = pd.DataFrame({"importance": imp, "share": imp / r2 if r2 > 0 else np.zeros_like(imp)},
                         index=pd.Index(design.players, name="driver"))
    table["rank"] = table["importance"].rank(ascending=False, method="min").astype(int)
    table["sign"] = signs.astype(int)
    table["signed_importance"] = table["importance"] * np.where(signs == 0, 1.0, signs)
    return table, imp, r2, info

def relative_importance(data, outcome: str, drivers, method: str = "shapley", weights=None,
                        n_boot: int = 0, ci: float = 0.95, seed=None, missing: str = "listwise",
                        max_exact: int = MAX_EXACT, ci_method: str = "percentile", *, filters=None,
                        start=None, end=None, by=None, min_responses: int | None = None):
    """Relative importance of ``drivers`` for ``outcome`` (see the module docstring for the formulas).

    ``data``: the responses as a DataFrame, or a Dataset (the rows are selected in DuckDB). ``filters``
    (column -> value or list; customer columns such as segment or region are joined on ``customer_id``;
    see :mod:`helpers.selection`) and ``start``/``end`` (inclusive days of ``response_date``) select the
    responses. ``drivers`` is a list of columns or one column name; ``method`` also accepts the aliases of
    :data:`METHOD_ALIASES` (``"lmg"``).

    Returns a :class:`DriverImportance` (rows sorted by rank; ``.table``, ``.plot(ax)``, ``.summary()``,
    bootstrap draws in ``.draws``/``.boot_r2``; it also answers the DataFrame calls older code made, e.g.
    ``t["importance"]``, ``t.loc[...]``, ``t.attrs["r2"]``). Its table is indexed by driver (factor name for a
    categorical driver) with columns
    ``importance`` (units of R^2), ``share`` (importance / R^2), ``rank`` (1 = most important), ``sign``
    (+1/-1: direction of the full-model coefficient; 0 for a factor), ``signed_importance``, and
    ``ci_low``/``ci_high`` (bootstrap, units of R^2) when ``n_boot > 0``. ``.attrs`` holds ``r2``, ``n``,
    ``method`` (as asked), ``method_used``, ``exact``, ``fallback``, ``missing``, ``dropped``
    ({driver: reason}), ``weighted``, ``ci``, ``ci_method``, ``n_boot`` (re-samples drawn),
    ``n_boot_requested``, ``n_boot_reason`` (why fewer were drawn, see :func:`bootstrap_draws`; "" if
    none), ``n_boot_usable``, ``ci_at_zero`` (drivers whose interval was set to start at 0, see
    :func:`consistent_interval`), ``warnings``.

    Bootstrap: up to ``n_boot`` resamples of the rows (keeping each row's case weight), capped by the cost
    bound of :func:`bootstrap_draws`; replicate correlation matrices from matrix products, importances from
    the batched sweep; ``ci_method`` "percentile" or "bca" (bias-corrected and accelerated, Efron 1987,
    acceleration from a grouped jackknife of 20 groups). Intervals are made to contain their estimate
    (:func:`consistent_interval`: an importance near 0 gets ``[0, upper]``).

    ``by`` (a column or list of columns, e.g. ``"segment"``: a customer column is joined in DuckDB, as for
    ``filters``) gives one analysis per group instead: a :class:`GroupedDriverImportance` whose ``.results[group]``
    is exactly ``relative_importance`` on that group's rows (same arguments and seed) and whose ``.table`` is tidy
    (group, driver, share with its interval, rank, n). Groups with fewer than ``min_responses`` usable responses
    (default ``max(30, 10 * drivers)``, the rule of :func:`helpers.drivers_analysis.analyze_by_segment`) are
    flagged ``small`` in ``.sizes`` and not analysed.
    """
    asked, method = method, canonical_method(method)
    drivers = as_driver_list(drivers)
    if not 0 < ci < 1:
        raise DriverInputError(f"ci={ci}; expected a confidence level between 0 and 1, e.g. 0.95")
    if by is not None:
        return _grouped_importance(data, outcome, drivers, by, min_responses, filters, start, end, weights,
                                   dict(method=asked, n_boot=n_boot, ci=ci, seed=seed, missing=missing,
                                        max_exact=max_exact, ci_method=ci_method))
    data = driver_rows(data, outcome, drivers, weights, filters, start, end)
    design = _build_design(data, outcome, drivers, weights, missing)
    n_rows = design.X.shape[0]
    if n_rows < 3:
        raise DriverInputError(f"only {n_rows} usable rows for outcome {outcome!r} and drivers "
                               f"{list(drivers)} ({missing} deletion); expected at least drivers + 2")
    corr, sd, n = _corr_of_design(design, missing)
    if not np.isfinite(sd[0]) or sd[0] <= 0:
        raise DriverInputError(f"outcome {outcome!r} is constant in the {n_rows} usable rows; "
                               "nothing to explain")
    q = len(design.columns)
    if n < q + 2:
        raise DriverInputError(f"{n} usable rows for {q} driver columns ({missing} deletion); expected at "
                               f"least {q + 2} (drivers + 2)")
    corr, design = _drop_degenerate(corr, design, sd)
    q = len(design.columns)
    if missing == "pairwise" and np.linalg.eigvalsh(corr).min() < -1e-10:
        raise DriverInputError("the pairwise-complete correlation matrix is not positive semi-definite "
                               "(too much missing data in different rows); use missing='listwise'")
    table, imp, r2, info = importance_table(corr, design, method, max_exact)
    warnings = list(design.warnings)
    if info["fallback"]:
        warnings.append(info["fallback"])
    if n < 10 * q:
        warnings.append(f"only {n} responses for {q} driver columns (fewer than 10 per driver): "
                        "importances are unstable, read the intervals")
    draws = None
    n_used, boot_reason, at_zero = 0, "", []
    if n_boot and n_boot > 0:
        n_used, boot_reason = bootstrap_draws(n_boot, len(design.players), n_rows, q, info["method_used"], missing)
        draws, r2_draws = _bootstrap(design, method, missing, n_used, seed, info["method_used"], max_exact)
        lo, hi = _intervals(draws, imp, ci, ci_method, design, method, missing, info["method_used"], max_exact)
        lo, hi, zero = consistent_interval(imp, lo, hi, info["method_used"] in NONNEGATIVE_METHODS)
        at_zero = [p for p, z in zip(design.players, zero) if z]
        table["ci_low"], table["ci_high"] = lo, hi
        r2_lo, r2_hi, _ = consistent_interval(r2, *np.nanquantile(r2_draws, [(1 - ci) / 2, (1 + ci) / 2]),
                                              nonnegative=False)  # extended to the estimate if needed
        table.attrs["r2_ci"] = (float(r2_lo), float(r2_hi))
    table.attrs.update(r2=r2, n=int(n), method=asked, method_used=info["method_used"], exact=info["exact"],
                       fallback=info["fallback"], missing=missing, dropped=dict(design.dropped),
                       weighted=weights is not None, ci=ci, ci_method=ci_method, n_boot=int(n_used),
                       n_boot_requested=int(n_boot or 0), n_boot_reason=boot_reason,
                       n_boot_usable=0 if draws is None else int(draws.shape[0]), ci_at_zero=at_zero,
                       warnings=warnings, outcome=outcome, columns=list(design.columns),
                       filters=dict(filters or {}))
    return DriverImportance.from_table(table, draws, r2_draws if draws is not None else None)


def driver_rows(data, outcome: str, drivers, weights=None, filters=None, start=None, end=None,
                extra=()) -> pd.DataFrame:
    """The responses a driver analysis uses: ``data`` itself (a DataFrame without filters) or the rows of
    ``filters``/``start``/``end`` (a Dataset: selected in DuckDB with customer columns joined; a DataFrame:
    filtered in pandas), see :func:`helpers.selection.select_rows`; ``extra``: more columns to fetch (a
    grouping column such as the customer's segment)."""
    from helpers import selection as sel  # noqa: PLC0415

    if isinstance(data, pd.DataFrame) and not filters and start is None and end is None:
        return data
    cols = [outcome, *as_driver_list(drivers), *extra] + ([weights] if isinstance(weights, str) else [])
    if isinstance(data, pd.DataFrame):
        cols = None  # keep every column of the caller's frame
    try:
        return sel.select_rows(data, "responses", filters, cols, start=start, end=end, date_column="response_date",
                               what=f"drivers of {outcome}")
    except sel.SelectionError as exc:
        raise DriverInputError(str(exc)) from None


class DriverImportance:
    """Relative importance of the drivers (see :func:`relative_importance`): ``.table`` sorted by rank,
    ``.r2``, ``.n``, ``.attrs`` (method, exact, dropped, warnings, ...), ``.draws``/``.boot_r2`` (bootstrap
    draws, columns in table order; None without bootstrap), ``.plot(ax)``, ``.summary()``.

    DataFrame calls (``t["importance"]``, ``t.loc[...]``, ``t.index``, ``t.sort_values(...)``) go to ``.table``
    so code written when the result was a DataFrame keeps working."""

    def __init__(self, table: pd.DataFrame, attrs: dict, draws=None, boot_r2=None):
        self.table = table
        self.table.attrs = {}
        self.attrs = attrs
        self.draws = draws
        self.boot_r2 = boot_r2

    @classmethod
    def from_table(cls, table: pd.DataFrame, draws=None, boot_r2=None) -> "DriverImportance":
        attrs = dict(table.attrs)
        order = np.argsort(table["rank"].to_numpy(), kind="stable")
        sorted_table = table.iloc[order].copy()
        if draws is not None:
            draws = draws[:, order]
        return cls(sorted_table, attrs, draws, boot_r2)

    # results
    @property
    def r2(self) -> float:
        return float(self.attrs.get("r2", np.nan))

    @property
    def n(self):
        return self.attrs.get("n")

    @property
    def outcome(self) -> str:
        return str(self.attrs.get("outcome", "the outcome"))

    def summary(self) -> str:
        from helpers.formatting import column_label, fmt_interval, fmt_number  # noqa: PLC0415

        t = self.table
        if t.empty:
            return f"No usable drivers of {column_label(self.outcome)}."
        top = t.index[0]
        share = float(t["share"].iloc[0])
        ci = ""
        if self.draws is not None and self.boot_r2 is not None:
            lv = self.attrs.get("ci", 0.95)
            top_ci = self.share_intervals().iloc[0]
            ci = f" ({lv:.0%} CI {fmt_interval(top_ci['share_low'], top_ci['share_high'], percent=True)})"
        n = self.n
        method = {"shapley": "Shapley/LMG", "relative_weights": "relative weights"}.get(
            self.attrs.get("method_used", ""), self.attrs.get("method_used", ""))
        return (f"{column_label(top)} is the strongest of {len(t)} drivers of {column_label(self.outcome)}: "
                f"{share:.0%} of the explained variance{ci}; R² = {self.r2:.2f}"
                + (f", n = {fmt_number(n)}" if n is not None else "") + f" ({method}).")

    def share_intervals(self) -> pd.DataFrame:
        """Each driver's share of R^2 with its bootstrap interval (columns ``share``, ``share_low``,
        ``share_high``, indexed by driver in table order): percentiles of the replicate ratios
        importance* / R^2* at ``attrs["ci"]``, widened to contain the estimate (:func:`consistent_interval`);
        NaN without bootstrap."""
        share = self.table["share"].to_numpy(dtype=float)
        lo = hi = np.full(share.shape, np.nan)
        if self.draws is not None and self.boot_r2 is not None and len(self.draws):
            lv = float(self.attrs.get("ci", 0.95))
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios = self.draws / np.asarray(self.boot_r2, dtype=float)[:, None]
            ratios[~np.isfinite(ratios)] = np.nan
            lo, hi = np.nanquantile(ratios, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
            lo, hi, _ = consistent_interval(share, lo, hi,
                                            self.attrs.get("method_used") in NONNEGATIVE_METHODS)
        return pd.DataFrame({"share": share, "share_low": lo, "share_high": hi}, index=self.table.index)

    def plot(self, ax=None):
        """Horizontal bars: each driver's share of the explained variance, with its interval when bootstrapped."""
        from helpers.charts import ACCENT, new_axis  # noqa: PLC0415
        from helpers.formatting import chart_text, column_label  # noqa: PLC0415

        t = self.table
        ax = new_axis(ax, figsize=(7, 0.4 * len(t) + 1.5))
        y = np.arange(len(t))[::-1]
        share = 100 * t["share"].to_numpy(dtype=float)
        ax.barh(y, share, color=ACCENT, alpha=0.85)
        if self.draws is not None and self.boot_r2 is not None and self.r2 > 0:
            si = self.share_intervals()  # the interval the summary and the table state
            lo, hi = 100 * si["share_low"].to_numpy(dtype=float), 100 * si["share_high"].to_numpy(dtype=float)
            ax.errorbar(share, y, xerr=np.vstack([np.clip(share - lo, 0, None), np.clip(hi - share, 0, None)]),
                        fmt="none", ecolor="#24292f", capsize=3, lw=1)
        ax.set_yticks(y, [chart_text(column_label(i)) for i in t.index])
        ax.set_xlabel(f"% of explained variance in {column_label(self.outcome)}")
        ax.set_title(chart_text(f"Drivers of {column_label(self.outcome)} (R² = {self.r2:.2f}"
                                + (f", n = {self.n:,}" if isinstance(self.n, int) else "") + ")"))
        return ax

    # display
    def _display_frame(self):
        t = self.table.reset_index()
        out = pd.DataFrame({"driver": t["driver"].map(str), "rank": t["rank"], "share": t["share"],
                            "direction": np.where(t["sign"] < 0, "negative", np.where(t["sign"] > 0, "positive", "factor"))})
        if self.draws is not None and self.boot_r2 is not None:
            from helpers.formatting import fmt_interval  # noqa: PLC0415
            si = self.share_intervals()  # the same interval as the summary's
            out["Share 95% CI"] = [fmt_interval(a, b, percent=True) for a, b in zip(si["share_low"], si["share_high"])]
        from helpers.formatting import column_label  # noqa: PLC0415
        out["driver"] = out["driver"].map(column_label)
        return out, {"share": "percent:1", "rank": "int"}

    def _repr_html_(self) -> str:
        from helpers.results import ResultDisplay  # noqa: PLC0415
        return ResultDisplay._repr_html_(self)

    def _display_sentence(self) -> str:
        from helpers.results import first_sentence  # noqa: PLC0415
        return first_sentence(self.summary())

    def _display_table(self):
        return self.table

    _full_table_hint = "`.table` (bootstrap draws: `.draws`)"

    def __repr__(self) -> str:
        from helpers.results import clip  # noqa: PLC0415
        return f"<DriverImportance [{len(self.table)} drivers]: {clip(self.summary(), 160)}>"

    # DataFrame compatibility
    def __getitem__(self, key):
        return self.table[key]

    def __setitem__(self, key, value):
        self.table[key] = value

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self):
        return iter(self.table)

    def __contains__(self, key) -> bool:
        return key in self.table

    def __getattr__(self, name):
        if name.startswith("__") or name in ("table", "attrs", "draws", "boot_r2"):
            raise AttributeError(name)
        return getattr(self.table, name)


OKABE_ITO = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000", "#f0e442")
"""Colours told apart with every common colour-vision deficiency (Okabe & Ito 2008), one per group."""


class GroupedDriverImportance:
    """:func:`relative_importance` per group (``by=``): ``.results`` {group: :class:`DriverImportance`} for the
    groups analysed; ``.table``, tidy: one row per group and driver with ``n``, ``importance``, ``share``,
    ``share_low``/``share_high`` (bootstrap, see :meth:`DriverImportance.share_intervals`), ``rank``, ``r2``;
    ``.sizes``: every group with its usable responses ``n``, ``small`` (below ``min_responses``: not analysed)
    and ``r2``; ``.warnings``; ``.plot(ax)``, ``.summary()``."""

    _full_table_hint = "`.table` (every group × driver), `.results[group]` (one analysis), `.sizes` (every group)"

    def __init__(self, by: list[str], outcome: str, results: dict, sizes: pd.DataFrame, table: pd.DataFrame,
                 min_responses: int, warnings: list[str]):
        self.by, self.outcome, self.results, self.sizes = by, outcome, results, sizes
        self.table, self.min_responses, self.warnings = table, min_responses, warnings

    def __getitem__(self, group) -> "DriverImportance":
        return self.results[group]

    def __len__(self) -> int:
        return len(self.results)

    def _group_text(self, key) -> str:
        return " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)

    def small_groups(self) -> list:
        return [g for g, small in zip(self.sizes["group"], self.sizes["small"]) if small]

    def summary(self) -> str:
        from helpers.formatting import column_label, fmt_interval, fmt_number  # noqa: PLC0415

        by = " and ".join(column_label(b).lower() for b in self.by)
        parts = []
        for key, res in self.results.items():
            if res.table.empty:
                continue
            top = res.share_intervals().iloc[0]
            ci = (f" ({fmt_interval(top['share_low'], top['share_high'], percent=True)})"
                  if np.isfinite(top["share_low"]) else "")
            parts.append(f"{self._group_text(key)}: {column_label(res.table.index[0])} {top['share']:.0%}{ci}, "
                         f"n = {fmt_number(res.n)}")
        leaders = {res.table.index[0] for res in self.results.values() if not res.table.empty}
        if not parts:
            head = (f"No {by} group has {fmt_number(self.min_responses)} or more usable responses for a driver "
                    f"analysis of {column_label(self.outcome)}.")
        else:
            lead = (f"{column_label(next(iter(leaders)))} is the strongest driver of {column_label(self.outcome)} in "
                    f"every {by} analysed" if len(leaders) == 1 else
                    f"The strongest driver of {column_label(self.outcome)} differs by {by} ({len(leaders)} leaders)")
            head = f"{lead}: " + "; ".join(parts[:6]) + (f"; and {len(parts) - 6} more" if len(parts) > 6 else "") + "."
        small = self.small_groups()
        if small:
            head += (f" Not analysed (fewer than {fmt_number(self.min_responses)} usable responses): "
                     + ", ".join(f"{self._group_text(g)} (n = {fmt_number(n)})" for g, n in
                                 zip(small[:5], self.sizes.loc[self.sizes["small"], "n"][:5]))
                     + (f" and {len(small) - 5} more" if len(small) > 5 else "") + ".")
        return head

    def plot(self, ax=None):
        """Dots and intervals: each driver's share of the explained variance in each group analysed (drivers in the
        order of the first group's ranking)."""
        from helpers.charts import new_axis  # noqa: PLC0415
        from helpers.formatting import chart_text, column_label  # noqa: PLC0415

        drivers = list(dict.fromkeys(self.table["driver"]))
        groups = list(self.results)
        ax = new_axis(ax, figsize=(7.5, 0.25 * len(drivers) * max(len(groups), 2) + 1.8))
        step = 0.8 / max(len(groups), 1)
        for i, key in enumerate(groups):
            part = self.results[key].share_intervals().reindex(drivers)
            y = np.arange(len(drivers))[::-1] + 0.4 - step * (i + 0.5)
            x = 100 * part["share"].to_numpy(dtype=float)
            lo, hi = 100 * part["share_low"].to_numpy(dtype=float), 100 * part["share_high"].to_numpy(dtype=float)
            err = np.vstack([np.clip(x - lo, 0, None), np.clip(hi - x, 0, None)]) if np.isfinite(lo).any() else None
            ax.errorbar(x, y, xerr=err, fmt="o", ms=5, capsize=2, lw=1, color=OKABE_ITO[i % len(OKABE_ITO)],
                        label=chart_text(f"{self._group_text(key)} (n = {self.results[key].n:,})"))
        ax.set_yticks(np.arange(len(drivers))[::-1], [chart_text(column_label(d)) for d in drivers])
        ax.set_xlabel(f"% of explained variance in {column_label(self.outcome)}")
        ax.set_title(chart_text(f"Drivers of {column_label(self.outcome)} by "
                                + " and ".join(column_label(b).lower() for b in self.by)))
        ax.legend(fontsize=8, loc="lower right")
        return ax

    # display
    def _display_frame(self):
        from helpers.formatting import NA, column_label, fmt_interval  # noqa: PLC0415

        rows = []
        for g, n, small in zip(self.sizes["group"], self.sizes["n"], self.sizes["small"]):
            res = self.results.get(g)
            if res is None or res.table.empty:
                rows.append({"group": self._group_text(g), "n": n, "strongest driver": "not analysed" if small else NA,
                             "share": np.nan, "Share 95% CI": NA, "R²": np.nan})
                continue
            top = res.share_intervals().iloc[0]
            rows.append({"group": self._group_text(g), "n": n,
                         "strongest driver": column_label(res.table.index[0]), "share": top["share"],
                         "Share 95% CI": fmt_interval(top["share_low"], top["share_high"], percent=True),
                         "R²": res.r2})
        out = pd.DataFrame(rows)
        out["small"] = np.where(self.sizes["small"].to_numpy(), "yes", "")
        return out, {"n": "int", "share": "percent:1", "R²": "number:2"}

    def _repr_html_(self) -> str:
        from helpers.results import ResultDisplay  # noqa: PLC0415
        return ResultDisplay._repr_html_(self)

    def _display_sentence(self) -> str:
        from helpers.results import first_sentence  # noqa: PLC0415
        return first_sentence(self.summary())

    def _display_table(self):
        return self.table

    def __repr__(self) -> str:
        from helpers.results import clip  # noqa: PLC0415
        return (f"<GroupedDriverImportance [{len(self.results)} of {len(self.sizes)} groups]: "
                f"{clip(self.summary(), 160)}>")


def _grouped_importance(data, outcome, drivers, by, min_responses, filters, start, end, weights, options):
    """:func:`relative_importance` with ``by=``: the rows fetched once (customer columns joined in DuckDB), split by
    group, each group with enough usable responses analysed with the same arguments and seed."""
    from helpers import selection as sel  # noqa: PLC0415
    from helpers.formatting import shorten  # noqa: PLC0415

    try:
        by_cols = sel.as_columns(by)
    except sel.SelectionError as exc:
        raise DriverInputError(str(exc)) from None
    if not by_cols:
        raise DriverInputError("by= names no column; give a column such as 'segment' or a list of columns")
    if not isinstance(data, pd.DataFrame):
        rows = driver_rows(data, outcome, drivers, weights, filters, start, end, extra=by_cols)
    else:
        rows = driver_rows(data, outcome, drivers, weights, filters, start, end)
        absent = [c for c in by_cols if c not in rows.columns]
        if absent:
            raise DriverInputError(f"drivers of {outcome} by {absent[0]!r}: the responses frame has no such column "
                                   f"(columns: {shorten(list(map(str, rows.columns)), 200)}); pass the Dataset to "
                                   "group by a customer column (segment, region, ...)")
    min_responses = int(min_responses) if min_responses is not None else max(30, 10 * len(drivers))
    for c in [outcome, *drivers]:
        if c not in rows.columns:
            raise DriverInputError(f"drivers of {outcome}: the data has no column {c!r}")
    usable = rows[outcome].notna()
    if options["missing"] == "listwise":
        usable &= rows[drivers].notna().all(axis=1)
    if isinstance(weights, str) and weights in rows.columns:
        usable &= rows[weights].notna()
    warnings = []
    keys = rows[by_cols].copy()
    no_group = keys.isna().any(axis=1)
    if no_group.any():
        warnings.append(f"{int(no_group.sum()):,} responses have no {' / '.join(by_cols)} and are in no group")
    counts = usable[~no_group].groupby([rows.loc[~no_group, c] for c in by_cols], observed=True, sort=True).sum()
    sizes = pd.DataFrame({"group": list(counts.index), "n": counts.to_numpy(dtype=int)})
    sizes["small"] = sizes["n"] < min_responses
    results, frames = {}, []
    w_all = None if (weights is None or isinstance(weights, str)) else np.asarray(weights, dtype=float)
    for key, small in zip(sizes["group"], sizes["small"]):
        if small:
            warnings.append(f"{' / '.join(by_cols)} {key!r}: only {int(sizes.loc[sizes['group'] == key, 'n'].iloc[0])} "
                            f"usable responses (< {min_responses}); not analysed")
            continue
        values = key if isinstance(key, tuple) else (key,)
        mask = np.ones(len(rows), dtype=bool)
        for c, v in zip(by_cols, values):
            mask &= (rows[c] == v).to_numpy(dtype=bool, na_value=False)
        w = weights if w_all is None else w_all[mask]
        res = relative_importance(rows.loc[mask], outcome, drivers, weights=w, **options)
        results[key] = res
        shares = res.share_intervals()
        part = pd.DataFrame({**{c: v for c, v in zip(by_cols, values)}, "driver": list(res.table.index),
                             "n": int(res.n), "importance": res.table["importance"].to_numpy(),
                             "share": shares["share"].to_numpy(), "share_low": shares["share_low"].to_numpy(),
                             "share_high": shares["share_high"].to_numpy(),
                             "rank": res.table["rank"].to_numpy(), "r2": res.r2})
        frames.append(part)
    columns = [*by_cols, "driver", "n", "importance", "share", "share_low", "share_high", "rank", "r2"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    sizes["r2"] = [results[k].r2 if k in results else np.nan for k in sizes["group"]]
    table.attrs = {}
    return GroupedDriverImportance(by_cols, outcome, results, sizes, table, min_responses, warnings)


def _resample_weights(n: int, w: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """Bootstrap replicate weights (n_boot x n): how often each row is drawn in n draws with replacement,
    times the row's case weight."""
    idx = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)
    return counts * w[None, :]


def _boot_corr(design: _Design, W: np.ndarray, missing: str) -> np.ndarray:
    X = design.X
    if missing == "listwise" or not np.isnan(X).any():
        return _complete_corr_stack(X, W)
    return _pairwise_corr_stack(X, W)[0]


LARGE_ROWS_ELEMS = 4_000_000  # rows x columns above which bootstrap replicates are computed one by one


def _corr_from_counts(Xc: np.ndarray, c: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """Weighted correlation of the centred rows ``Xc`` with replicate weights ``c`` (a resample's counts
    times the case weights): ``m = c'Xc / sum c``, ``C = Xc' diag(c) Xc / sum c - m m'``; ``buf`` is
    reused for ``diag(sqrt c) Xc`` (no allocation per replicate)."""
    s0 = c.sum()
    m = (c @ Xc) / s0
    np.multiply(Xc, np.sqrt(c)[:, None], out=buf)  # buf' buf is a symmetric rank-k update (BLAS syrk)
    C = (buf.T @ buf) / s0 - np.outer(m, m)
    sd = np.sqrt(np.clip(np.diag(C), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return C / np.outer(sd, sd)


def _collapsed_rows(design: _Design):
    """For a large complete design: the distinct rows (values and case weight) and how often each occurs,
    or None when the rows are not complete or too few repeat (fewer than half as many distinct rows).

    Rows are grouped by a 64-bit hash of their values (``pandas.util.hash_pandas_object``, one pass) and the
    grouping is verified exactly (every row equals its group's first row; on a hash collision the exact
    ``numpy.unique`` is used)."""
    n = design.X.shape[0]
    if n <= COLLAPSE_MIN_ROWS or np.isnan(design.X).any():
        return None
    keys = np.column_stack([design.X, design.w])
    hashes = pd.util.hash_pandas_object(pd.DataFrame(keys), index=False).to_numpy()
    codes, uniq_hash = pd.factorize(hashes)
    if len(uniq_hash) > n // 2:
        return None
    first = np.full(len(uniq_hash), n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n))
    uniq = keys[first]
    if np.array_equal(uniq[codes], keys):
        counts = np.bincount(codes, minlength=len(uniq))
    else:  # a hash collision: group exactly
        uniq, counts = np.unique(keys, axis=0, return_counts=True)
        if len(uniq) > n // 2:
            return None
    return uniq[:, :-1], uniq[:, -1], counts


def _bootstrap(design: _Design, method, missing, n_boot, seed, method_used, max_exact):
    """Bootstrap replicates of the importances (rows resampled with replacement, n draws per replicate).

    Above ``COLLAPSE_MIN_ROWS`` complete rows, when ratings repeat (survey ratings on 1-5 or 0-10 scales
    mostly do), the rows are collapsed into their distinct patterns (values and case weight) with counts
    ``c_u``; a replicate then draws the pattern counts from ``Multinomial(n, c_u / n)``, which is exactly
    the distribution of the row-resampling counts summed within patterns, so the replicates follow the same
    bootstrap distribution while the cost scales with the number of patterns instead of the rows. (The
    random stream differs from the row-level scheme, so it is only used for large data; smaller data keep
    the row-level draws exactly.)"""
    rng = np.random.default_rng(seed)
    n = design.X.shape[0]
    draws, r2s = [], []
    collapsed = _collapsed_rows(design)
    if collapsed is not None:
        X_u, w_u, counts = collapsed
        p_u = counts / counts.sum()
    rows = n if collapsed is None else len(counts)
    complete = collapsed is not None or missing == "listwise" or not np.isnan(design.X).any()
    k = design.X.shape[1]
    # large data: replicates one at a time with reused buffers (memory a few n x k arrays, no B x n matrix)
    one_by_one = complete and rows * k > LARGE_ROWS_ELEMS
    if one_by_one:
        X_src = X_u if collapsed is not None else design.X
        Xc = X_src - X_src.mean(axis=0)
        buf = np.empty_like(Xc)
        per_chunk = min(n_boot, 32)
    else:
        per_chunk = max(1, min(n_boot, int(1e7 // max(rows, 1))))  # replicate weights: at most 80 MB at once
    done = 0
    while done < n_boot:
        b = min(per_chunk, n_boot - done)
        if one_by_one:
            corr = np.empty((b, k, k))
            for i in range(b):
                if collapsed is None:
                    c = np.bincount(rng.integers(0, n, size=n), minlength=n) * design.w
                else:
                    c = rng.multinomial(n, p_u) * w_u
                corr[i] = _corr_from_counts(Xc, c, buf)
        elif collapsed is None:
            W = _resample_weights(n, design.w, b, rng)
            corr = _boot_corr(design, W, missing)
        else:
            W = rng.multinomial(n, p_u, size=b).astype(float) * w_u[None, :]
            corr = _complete_corr_stack(X_u, W)
        ok = np.all(np.isfinite(corr.reshape(b, -1)), axis=1)
        imp = np.full((b, len(design.players)), np.nan)
        r2 = np.full(b, np.nan)
        if ok.any():
            try:
                imp[ok], r2[ok], _ = _importance_stack(corr[ok], design.player_cols, method_used,
                                                       design.categorical, max_exact)
            except np.linalg.LinAlgError:
                for i in np.nonzero(ok)[0]:
                    try:
                        a, r, _ = _importance_stack(corr[i], design.player_cols, method_used,
                                                    design.categorical, max_exact)
                        imp[i], r2[i] = a[0], r[0]
                    except np.linalg.LinAlgError:
                        pass
        draws.append(imp)
        r2s.append(r2)
        done += b
    draws = np.vstack(draws)
    good = np.all(np.isfinite(draws), axis=1)
    if n_boot < 10:  # the rule below needs 10 usable re-samples: say so rather than blame singular models
        raise DriverInputError(f"n_boot = {n_boot}: at least 10 bootstrap re-samples are needed for intervals "
                               "(n_boot = 0 for none)")
    if good.sum() < max(10, 0.9 * n_boot):
        raise DriverInputError(f"only {int(good.sum())} of {n_boot} bootstrap samples gave a usable model "
                               "(singular in the others): too few rows or categories too rare")
    return draws[good], np.concatenate(r2s)[good]


def _intervals(draws, est, ci, ci_method, design, method, missing, method_used, max_exact):
    alpha = (1 - ci) / 2
    if ci_method == "percentile":
        return np.quantile(draws, alpha, axis=0), np.quantile(draws, 1 - alpha, axis=0)
    if ci_method != "bca":
        raise DriverInputError(f"ci_method={ci_method!r}; expected 'percentile' or 'bca'")
    from scipy.stats import norm
    B = draws.shape[0]
    prop = (draws < est[None, :]).mean(axis=0) + 0.5 * (draws == est[None, :]).mean(axis=0)
    z0 = norm.ppf(np.clip(prop, 1 / (B + 1), B / (B + 1)))
    # grouped jackknife for the acceleration
    n = design.X.shape[0]
    G = min(20, n)
    groups = np.arange(n) % G
    jack = []
    for g in range(G):
        W = (design.w * (groups != g))[None, :]
        corr = _boot_corr(design, W, missing)
        a, _, _ = _importance_stack(corr, design.player_cols, method_used, design.categorical, max_exact)
        jack.append(a[0])
    jack = np.array(jack)
    d = jack.mean(axis=0) - jack
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = (d ** 3).sum(axis=0) / (6 * ((d ** 2).sum(axis=0)) ** 1.5)
    acc = np.nan_to_num(acc)
    lo, hi = [], []
    for zq in (norm.ppf(alpha), norm.ppf(1 - alpha)):
        adj = norm.cdf(z0 + (z0 + zq) / (1 - acc * (z0 + zq)))
        (lo if zq < 0 else hi).append(np.array([np.quantile(draws[:, j], adj[j]) for j in range(draws.shape[1])]))
    return lo[0], hi[0]


def relative_importance_from_corr(corr, outcome: str, drivers, method: str = "shapley",
                                  max_exact: int = MAX_EXACT, n: int | None = None) -> "DriverImportance":
    """The same analysis from a correlation (or covariance) matrix alone, e.g. a published table.

    ``corr`` is a DataFrame with row and column labels including ``outcome`` and ``drivers`` (or a square
    array ordered [outcome, *drivers]). All drivers are numeric (no groups); no bootstrap. ``n`` (optional)
    is recorded in ``attrs``.
    """
    asked, method = method, canonical_method(method)
    drivers = as_driver_list(drivers)
    if isinstance(corr, pd.DataFrame):
        names = [outcome, *drivers]
        absent = [c for c in names if c not in corr.index or c not in corr.columns]
        if absent:
            raise DriverInputError(f"correlation matrix has no row/column {absent}")
        C = corr.loc[names, names].to_numpy(dtype=float)
    else:
        C = np.asarray(corr, dtype=float)
        if C.shape != (len(drivers) + 1,) * 2:
            raise DriverInputError(f"correlation matrix is {C.shape}; expected {(len(drivers) + 1,) * 2} "
                                   "ordered [outcome, *drivers]")
    if not np.allclose(C, C.T, atol=1e-12) or not np.all(np.isfinite(C)):
        raise DriverInputError("the correlation matrix must be finite and symmetric")
    sd = np.sqrt(np.diag(C))
    if np.any(sd <= 0):
        raise DriverInputError("the correlation matrix has a zero variance on its diagonal")
    C = C / np.outer(sd, sd)
    if np.linalg.eigvalsh(C).min() < -1e-8:
        raise DriverInputError("the matrix is not a valid correlation matrix (not positive semi-definite): "
                               "check the transcribed values")
    design = _Design(X=np.empty((0, len(drivers) + 1)), w=np.empty(0), columns=drivers, players=list(drivers),
                     player_cols=[np.array([i]) for i in range(len(drivers))], categorical=[False] * len(drivers))
    C, design = _drop_degenerate(C, design, np.ones(len(drivers) + 1))
    imp, r2, info = _importance_stack(C, design.player_cols, method, design.categorical, max_exact)
    imp, r2 = imp[0], float(r2[0])
    if not np.all(np.isfinite(imp)) or not np.isfinite(r2):
        raise DriverInputError("the importances could not be computed from this matrix (singular)")
    signs = _player_signs(C, design.player_cols, design.categorical)
    table = pd.DataFrame({"importance": imp, "share": imp / r2 if r2 > 0 else np.zeros_like(imp)},
                         index=pd.Index(design.players, name="driver"))
    table["rank"] = table["importance"].rank(ascending=False, method="min").astype(int)
    table["sign"] = signs.astype(int)
    table["signed_importance"] = table["importance"] * signs
    table.attrs.update(r2=r2, n=n, method=asked, method_used=info["method_used"], exact=info["exact"],
                       fallback=info["fallback"], missing="n/a (correlation matrix)",
                       dropped=dict(design.dropped), weighted=False, outcome=outcome,
                       warnings=[info["fallback"]] if info["fallback"] else [])
    return DriverImportance.from_table(table)


def conditional_dominance(data_or_corr, outcome: str, drivers, from_corr: bool = False,
                          weights=None, missing: str = "listwise") -> pd.DataFrame:
    """Conditional dominance statistics (Azen & Budescu 2003): the average R^2 increment of each driver
    over all subsets of the other drivers of each size (columns 0..p-1). Size 0 is ``first``, size p-1
    is ``last``, and the row mean is the Shapley/LMG value (general dominance)."""
    if from_corr:
        names = [outcome, *drivers]
        C = data_or_corr.loc[names, names].to_numpy(dtype=float) if isinstance(data_or_corr, pd.DataFrame) \
            else np.asarray(data_or_corr, dtype=float)
        sd = np.sqrt(np.diag(C))
        C = C / np.outer(sd, sd)
        players = list(drivers)
        pcols = [np.array([i]) for i in range(len(drivers))]
    else:
        design = _build_design(data_or_corr, outcome, drivers, weights, missing)
        C, sd, _ = _corr_of_design(design, missing)
        C, design = _drop_degenerate(C, design, sd)
        players, pcols = design.players, design.player_cols
    v = subset_r2(C, pcols)[0]
    cd = conditional_dominance_from_subsets(v)
    return pd.DataFrame(cd, index=pd.Index(players, name="driver"),
                        columns=pd.Index(range(len(players)), name="subset_size"))


def vif(data: pd.DataFrame, drivers, weights=None) -> pd.Series:
    """Variance inflation factors ``VIF_j = [R_xx^-1]_jj`` (listwise complete rows, numeric drivers)."""
    drivers = list(drivers)
    design = _build_design(data.assign(_one=1.0), "_one", drivers, weights, "listwise")
    X = design.X[:, 1:]
    R, sd = _weighted_corr(X, design.w)
    if np.any(sd <= 0):
        raise DriverInputError(f"constant driver(s) {[c for c, s in zip(design.columns, sd) if s <= 0]}: VIF undefined")
    try:
        inv = np.linalg.inv(R)
    except np.linalg.LinAlgError:
        raise DriverInputError(f"drivers {design.columns} are perfectly collinear: VIF is infinite") from None
    return pd.Series(np.diag(inv), index=pd.Index(design.columns, name="driver"), name="vif")
