"""Issue 16 items 2 and 3: drivers that barely matter, many drivers, and bounded cost.

* A driver that barely matters (pure-noise ratings) has a Shapley share near 0 whose percentile bootstrap
  interval can lie entirely above the estimate; the chart crashed on it (negative ``xerr``) and the table
  showed an interval that excluded its own estimate.
* Twenty drivers with a bootstrap took minutes and gigabytes (all 2^p subset matrices of all replicates at
  once); the subset R^2 now come from a sweep over the players, in bounded batches.
"""
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from helpers.drivers import relative_importance  # noqa: E402
from helpers.drivers_analysis import analyze_drivers  # noqa: E402


def _with_noise(responses: pd.DataFrame, k: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    out = responses.copy()
    names = [f"attr_noise{i}" for i in range(k)]
    for name in names:
        out[name] = rng.integers(1, 6, len(out)).astype(float)
    return out, names


def test_noise_driver_interval_above_estimate_no_longer_breaks_the_chart(small_demo):
    """Regression (issue 16 item 2): four attr_noise* columns in the demo's Customer Service responses; with
    seed 0 the percentile interval of attr_noise2 lies entirely above its estimate, and the chart raised
    ``ValueError: 'xerr' must not contain negative values``."""
    responses = pd.read_parquet(small_demo / "responses.parquet")
    attrs = [c for c in responses.columns if c.startswith("attr_")]
    data, noise = _with_noise(responses[responses["department"] == "Customer Service"], 4)
    res = analyze_drivers(data, "csat", attrs + noise, n_boot=200, seed=0, ordinal=False)
    t = res.table
    # the raw percentile interval of at least one noise driver excludes its estimate (the case that crashed)
    raw_low = np.quantile(res.draws / res.boot_r2[:, None], 0.025, axis=0)
    assert (raw_low > t["share"].to_numpy()).any()
    # what is reported is consistent: every interval contains its estimate, the affected ones start at 0
    assert ((t["share_low"] <= t["share"]) & (t["share"] <= t["share_high"])).all()
    assert ((t["ci_low"] <= t["importance"]) & (t["importance"] <= t["ci_high"])).all()
    at_zero = res.attrs["ci_at_zero"]
    assert at_zero and set(at_zero) <= set(noise)
    assert (t.loc[at_zero, "share_low"] == 0).all() and (t.loc[at_zero, "ci_low"] == 0).all()
    assert "cannot be told apart from zero" in res.summary()
    fig, ax = plt.subplots()
    assert res.plot(ax=ax) is ax
    plt.close(fig)


def test_interval_rule_on_synthetic_null_drivers():
    """Known truth: drivers 3..7 have importance 0. Every reported interval contains its estimate, and the
    intervals of the null drivers whose percentile interval excluded the estimate contain the truth (0)."""
    rng = np.random.default_rng(12)
    n = 600
    X = rng.normal(size=(n, 8))
    y = X[:, 0] + 0.6 * X[:, 1] + 0.3 * X[:, 2] + rng.normal(size=n)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]).assign(y=y)
    for method in ("shapley", "relative_weights", "first", "pratt"):
        t = relative_importance(df, "y", list(df.columns[:-1]), method=method, n_boot=300, seed=2)
        assert ((t["ci_low"] <= t["importance"]) & (t["importance"] <= t["ci_high"])).all(), method
        for d in t.attrs["ci_at_zero"]:
            assert t.loc[d, "ci_low"] == 0.0 and d in {f"x{i}" for i in range(3, 8)}


# --- item 3: exact Shapley by the sweep, memory and draws bounded ------------------------------------------
def _random_corr_stack(B, q, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(B):
        X = rng.normal(size=(150, q + 1)) + rng.normal(size=(150, 1))
        out.append(np.corrcoef(X.T))
    return np.stack(out)


@pytest.mark.parametrize("counts, budget", [([1] * 9, 10**7), ([1] * 9, 500), ([2, 1, 3, 1, 1], 10**7),
                                            ([1, 1, 2, 1, 1, 1, 1, 1, 1, 1], 200)])
def test_sweep_equals_the_former_solve_engine_in_any_block_layout(counts, budget):
    """The sweep (packed, batched, split into blocks when the budget is small) gives the same subset R^2
    and Shapley values as solving every subset's normal equations (the former engine)."""
    from helpers.drivers import _shapley_sweep, _subset_r2_solve, shapley_from_subsets, subset_r2
    pcols, pos = [], 0
    for c in counts:
        pcols.append(np.arange(pos, pos + c))
        pos += c
    C = _random_corr_stack(5, pos, seed=len(counts) + budget)
    v_ref = _subset_r2_solve(C, pcols)
    np.testing.assert_allclose(subset_r2(C, pcols, budget=budget), v_ref, rtol=1e-10, atol=1e-14)
    phi = _shapley_sweep(C, pcols, budget=budget)
    np.testing.assert_allclose(phi, shapley_from_subsets(v_ref), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(phi.sum(axis=1), v_ref[:, -1], rtol=1e-12)


def test_sweep_memory_stays_within_its_budget():
    """Regression (issue 16 item 3): the former engine held all 2^p subset matrices of all replicates (9.3 GB
    at p = 20 with 500 draws). The sweep's peak allocation stays near its budget whatever p and B."""
    import tracemalloc

    from helpers.drivers import _shapley_sweep
    P, B, budget = 16, 40, 1_000_000
    C = _random_corr_stack(B, P, seed=3)
    pcols = [np.array([i]) for i in range(P)]
    tracemalloc.start()
    phi = _shapley_sweep(C, pcols, budget=budget)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2 * 8 * budget + 4 * 8 * 2 ** P, peak  # the budget plus a few per-block 2^p vectors
    assert phi.shape == (B, P) and np.isfinite(phi).all()


def test_bootstrap_draws_follow_the_documented_cost_bound(monkeypatch):
    import helpers.drivers as engine
    from helpers.drivers import MIN_BOOT, bootstrap_draws

    assert bootstrap_draws(500, 6, 10_000, 6) == (500, "")
    n, why = bootstrap_draws(500, 20, 10_000, 20)
    assert n == engine.BOOT_SUBSET_BUDGET // 2 ** 20 and "20 attributes" in why and "1,048,576" in why
    assert bootstrap_draws(500, 24, 10_000, 24)[0] == MIN_BOOT  # never below the floor
    assert bootstrap_draws(100, 24, 10_000, 24) == (100, "")    # never more than asked
    n, why = bootstrap_draws(500, 30, 1_000_000, 80, method_used="relative_weights")
    assert n == MIN_BOOT and "1,000,000 responses" in why
    # the analysis uses and reports the capped number
    monkeypatch.setattr(engine, "BOOT_SUBSET_BUDGET", 2 ** 8 * 250)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 8))
    y = X @ np.linspace(1, 0.1, 8) + rng.normal(size=400)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]).assign(y=y)
    t = relative_importance(df, "y", [f"x{i}" for i in range(8)], n_boot=400, seed=1)
    assert t.attrs["n_boot"] == 250 and t.attrs["n_boot_requested"] == 400 and t.draws.shape[0] == 250
    assert "250 of the 400 requested" in t.attrs["n_boot_reason"]
    res = analyze_drivers(df, "y", [f"x{i}" for i in range(8)], n_boot=400, seed=1, ordinal=False)
    assert "Intervals from 250 bootstrap re-samples" in res.summary() and "400 were requested" in res.summary()


# --- 1 to 60 attributes, constant, all-missing and near-zero ones render ------------------------------------
@pytest.mark.parametrize("k_noise", [0, 1, 14, 60])
def test_driver_analysis_renders_with_1_to_60_attributes(small_demo, k_noise):
    responses = pd.read_parquet(small_demo / "responses.parquet")
    part = responses[responses["department"] == "Technical Support"]
    data, noise = _with_noise(part, k_noise, seed=k_noise)
    data = data.assign(attr_constant=3.0, attr_empty=np.nan)
    drivers = (["attr_speed"] if k_noise == 0 else ["attr_speed", "attr_resolution", *noise]) + ["attr_constant",
                                                                                                 "attr_empty"]
    res = analyze_drivers(data, "csat", drivers, n_boot=200, seed=0, ordinal=k_noise <= 14)
    assert set(res.dropped) == {"attr_constant", "attr_empty"}
    s = res.summary()
    assert "Left out of the analysis: " in s and "Constant (constant \\(no variation\\))" in s
    assert "Empty (all values missing)" in s
    assert "bootstrap re-samples" in s
    t = res.table
    assert ((t["share_low"] <= t["share"]) & (t["share"] <= t["share_high"])).all()
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    res.plot(ax=axes[0])
    if res.ipa is not None:
        res.ipa.plot(ax=axes[1])
        assert res.ipa.summary()
    if res.ordinal is not None:
        res.ordinal.plot(ax=axes[2])
    fig.canvas.draw()
    plt.close(fig)
    assert len(res.report_table()) == len(t)
    if len(t) > 20:  # more than the exact limit: the fallback is stated
        assert not res.attrs["exact"] and "relative weights" in s
    ax = res.plot()  # its own figure, sized for the number of attributes
    assert len(ax.get_yticklabels()) == min(30, len(t))
    plt.close(ax.figure)


def test_markdown_text_is_escaped():
    rng = np.random.default_rng(4)
    X = rng.integers(1, 6, size=(500, 3)).astype(float)
    names = ["attr_[click](javascript:alert(1))", "attr_ok", "attr_price_$"]
    df = pd.DataFrame(X, columns=names).assign(csat=np.clip(np.round(X.mean(axis=1) + rng.normal(0, .5, 500)), 1, 5))
    res = analyze_drivers(df, "csat", names, n_boot=0, ordinal=False, label="*Dept* <b>")
    s = res.summary()
    assert "](javascript" not in s and "<b>" not in s and "\\*Dept\\*" in s
    fig, ax = plt.subplots()
    res.plot(ax=ax)
    fig.canvas.draw()  # "$" in a label must not start mathtext
    plt.close(fig)


def test_segments_ignore_an_attribute_missing_in_a_whole_segment(small_demo):
    """Regression: one all-missing attribute made every department 'only 0 usable responses' in the
    comparison (listwise deletion across it) although each department's own analysis drops it."""
    from helpers.drivers_analysis import analyze_by_segment

    r = pd.read_parquet(small_demo / "responses.parquet")
    attrs = [c for c in r.columns if c.startswith("attr_")]
    r = r.assign(attr_empty=np.nan, attr_billing_only=np.where(r["department"] == "Billing", 3.0, np.nan))
    r.loc[(r["department"] == "Billing") & (r.index % 2 == 0), "attr_billing_only"] = 4.0
    seg = analyze_by_segment(r, "csat", [*attrs, "attr_empty", "attr_billing_only"], "department", n_boot=0,
                             min_n=100)
    assert len(seg.results) >= 4
    assert set(seg.results["Billing"].dropped) == {"attr_empty"}
    assert set(seg.results["Sales"].dropped) == {"attr_empty", "attr_billing_only"}
    ref = analyze_by_segment(r, "csat", attrs, "department", n_boot=0, min_n=100)
    assert seg.sizes.drop(index="Billing")["n"].equals(ref.sizes.drop(index="Billing")["n"])


@pytest.mark.parametrize("weights", [None, "w"])
def test_large_data_replicates_one_by_one_equal_the_stacked_replicates(monkeypatch, weights):
    """Above LARGE_ROWS_ELEMS the replicates are computed one at a time with reused buffers; same random
    stream, same replicates as the stacked computation (checked by lowering the threshold)."""
    import helpers.drivers as engine

    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 4))
    df = pd.DataFrame(X, columns=list("abcd")).assign(y=X @ [0.5, 0.3, 0.2, 0.0] + rng.normal(size=3000),
                                                      w=rng.integers(1, 3, 3000).astype(float))
    stacked = relative_importance(df, "y", list("abcd"), weights=weights, n_boot=200, seed=5)
    monkeypatch.setattr(engine, "LARGE_ROWS_ELEMS", 1000)
    one_by_one = relative_importance(df, "y", list("abcd"), weights=weights, n_boot=200, seed=5)
    np.testing.assert_allclose(one_by_one.draws, stacked.draws, rtol=1e-9, atol=1e-13)
    pd.testing.assert_frame_equal(one_by_one.table, stacked.table, check_exact=False, rtol=1e-9)


def test_distinct_rows_by_hash_fall_back_to_exact_grouping_on_a_collision(monkeypatch):
    """Distinct rows are found by a 64-bit row hash and verified; a (forced) hash collision falls back to the
    exact numpy.unique grouping, with the same patterns and counts."""
    import helpers.drivers as engine
    from helpers.drivers import _build_design, _collapsed_rows

    monkeypatch.setattr(engine, "COLLAPSE_MIN_ROWS", 100)
    rng = np.random.default_rng(6)
    df = pd.DataFrame(rng.integers(1, 4, size=(2000, 3)).astype(float), columns=list("aby"))
    design = _build_design(df, "y", ["a", "b"], None, "listwise")
    X_u, w_u, counts = _collapsed_rows(design)
    expected = df[["y", "a", "b"]].value_counts()
    assert len(counts) == len(expected) and counts.sum() == 2000
    got = {tuple(r): c for r, c in zip(X_u, counts)}
    assert got == {tuple(float(v) for v in k): c for k, c in expected.items()}
    monkeypatch.setattr(pd.util, "hash_pandas_object",
                        lambda frame, index=False: pd.Series(np.zeros(len(frame), np.uint64)))
    X_c, w_c, counts_c = _collapsed_rows(design)
    assert {tuple(r): c for r, c in zip(X_c, counts_c)} == got
