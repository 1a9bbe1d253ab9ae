"""helpers.explore on synthetic data with known shape, and on the small demo."""
import matplotlib
import numpy as np
import pandas as pd
import pytest

from helpers import explore
from helpers.config import DATA_ENV, resolve_data_source
from helpers.data import load_dataset
from helpers.errors import KitError

matplotlib.use("Agg")


def test_nps_group_boundaries():
    groups = explore.nps_group(pd.Series([0, 6, 7, 8, 9, 10, np.nan]))
    assert list(groups.astype(object)) == ["detractor", "detractor", "passive", "passive", "promoter", "promoter",
                                           np.nan]


def test_seasonality_recovers_a_known_seasonal_pattern():
    periods = pd.date_range("2022-01-01", periods=48, freq="MS")
    month = periods.month.to_numpy()
    true_season = 3.0 * np.sin(2 * np.pi * (month - 1) / 12)
    rng = np.random.default_rng(3)
    values = 50 + 0.1 * np.arange(48) + true_season + rng.normal(0, 0.2, 48)
    result = explore.seasonality(pd.DataFrame({"period": periods, "value": values}), "KPI")
    profile = result.month_profile()
    expected = 3.0 * np.sin(2 * np.pi * (profile.index.to_numpy() - 1) / 12)
    assert np.max(np.abs(profile.to_numpy() - expected)) < 0.5
    assert result.seasonal_amplitude == pytest.approx(6.0, abs=0.8)
    assert "lowest month (October)" in result.summary() and "highest (April)" in result.summary()


def test_seasonality_needs_two_years():
    short = pd.DataFrame({"period": pd.date_range("2024-01-01", periods=12, freq="MS"), "value": 1.0})
    with pytest.raises(KitError, match="at least 24 months"):
        explore.seasonality(short, "CSAT")


def test_overview_missing_and_plots_on_demo(small_demo):
    ds = load_dataset(small_demo)
    overview = explore.table_overview(ds)
    assert overview.loc["responses", "rows"] == len(ds.responses)
    assert str(overview.loc["tickets", "first date"]) >= "2023-11-01"
    missing = explore.missing_answers(ds)
    expected = ds.responses["nps"].isna().mean()
    assert missing.loc["nps", "missing share"] == pytest.approx(expected)
    assert set(ds.attributes) <= set(missing.index)
    hours = explore.ticket_hours(ds.tickets)
    assert (hours["hours"] >= 0).all() and set(hours["kind"]) == {"first response", "resolution"}
    for draw in (lambda: explore.plot_rating_distribution(ds.responses, "csat"),
                 lambda: explore.plot_nps_groups(ds.responses),
                 lambda: explore.plot_duration_distribution(ds.tickets, "resolution")):
        ax = draw()
        assert ax.get_title()
        matplotlib.pyplot.close(ax.figure)


def test_plot_refuses_an_empty_question():
    with pytest.raises(KitError, match="no answers"):
        explore.plot_rating_distribution(pd.DataFrame({"ces": [np.nan, np.nan]}), "ces")


def test_data_env_overrides_configured_source(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_data_source() == tmp_path.resolve()
    monkeypatch.delenv(DATA_ENV)
    assert resolve_data_source().name == "demo"


def test_missing_answers_quotes_column_names_from_the_data():
    """An attribute column whose name holds a double quote must not break (or inject into) the SQL."""
    import duckdb

    class _FakeDataset:
        con = duckdb.connect()
        attributes = ['attr_say "hi"']

        def columns(self, table):
            return [d[0] for d in self.con.execute(f"DESCRIBE {table}").fetchall()]

    ds = _FakeDataset()
    ds.con.execute('CREATE TABLE responses (csat DOUBLE, "attr_say ""hi""" DOUBLE)')
    ds.con.execute("INSERT INTO responses VALUES (5, NULL), (4, 3), (NULL, 2), (3, NULL)")
    shares = explore.missing_answers(ds)["missing share"]
    assert shares['attr_say "hi"'] == pytest.approx(0.5)
    assert shares["csat"] == pytest.approx(0.25)
