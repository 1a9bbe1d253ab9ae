"""Reader-facing retention tables: labels, intervals and p-values as a stakeholder reads them."""
import numpy as np
import pandas as pd
import pytest

from helpers.retention import fit_cox, kaplan_meier
from helpers.retention_report import format_p_value, hazard_display, survival_display


@pytest.mark.parametrize("p, text", [(1e-90, "<0.001"), (0.000999, "<0.001"), (0.001, "0.001"),
                                     (0.30406, "0.304"), (float("nan"), "n/a")])
def test_format_p_value(p, text):
    assert format_p_value(p) == text


def _frame(seed=1, n=600):
    rng = np.random.default_rng(seed)
    group = rng.choice(["basic", "premium"], n)
    rate = np.where(group == "premium", 0.05, 0.10)
    duration = rng.exponential(1 / rate)
    censor = rng.uniform(0, 30, n)
    return pd.DataFrame({"duration": np.minimum(duration, censor), "event": (duration <= censor).astype(int),
                         "plan": group})


def test_survival_display_matches_kaplan_meier():
    km = kaplan_meier(_frame(), "duration", "event", group="plan")
    shown = survival_display(km.medians)
    assert list(shown.index) == list(km.medians["plan"])
    for name, row in km.medians.set_index("plan").iterrows():
        assert shown.loc[name, "customers"] == f"{int(row['n']):,}"
        assert shown.loc[name, "median months as a customer"] == f"{row['median']:.1f}"
        assert shown.loc[name, "95% CI"].startswith(f"{row['ci_low']:.1f} to ")


def test_hazard_display_uses_labels_and_readable_p_values():
    cox = fit_cox(_frame(), "duration", "event", ["plan"])
    shown = hazard_display(cox)
    assert list(shown.index) == [cox.labels.get(c, c) for c in cox.table.index]
    assert shown.index[0].startswith("plan = premium")
    hr = cox.table["hazard_ratio"].iloc[0]
    assert shown["hazard ratio"].iloc[0] == f"{hr:.2f}"
    assert shown["change in monthly churn hazard"].iloc[0] == f"{100 * (hr - 1):+.0f}%"
    assert shown["p-value"].iloc[0] == format_p_value(cox.table["p_value"].iloc[0])
