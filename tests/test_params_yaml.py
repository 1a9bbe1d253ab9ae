"""Params YAML is loaded safely (issue 16, item 5): no anchors/aliases (a "billion laughs" file is refused at
its first anchor, naming file and line), bounded size and depth, and values in messages are shortened."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from helpers.config import load_report_config, repo_root
from helpers.errors import ObjectiveError, ParamsError
from helpers.objectives import load_objectives
from helpers.params_yaml import MAX_PARAMS_BYTES, MAX_PARAMS_DEPTH, load_params_yaml, parse_params_yaml


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The classic "billion laughs": ``levels`` anchored lists, each ``width`` aliases of the one before."""
    lines = [f"  - &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines)


def bomb_in(key: str, levels: int = 9) -> str:
    """A params document whose ``key`` is the last level of an alias bomb (the earlier levels in ``x_``)."""
    return f"x_:\n{alias_bomb(levels)}\n{key}: [{', '.join([f'*l{levels - 1}'] * 9)}]\n"


def test_bomb_fixture_is_a_real_bomb():
    # the fixture itself: a plain safe_load expands 4 anchored levels + the key's list to 9**5 leaves
    doc = yaml.safe_load(bomb_in("department", levels=4))
    leaves = [x for a in doc["department"] for b in a for c in b for d in c for x in d]
    assert len(leaves) == 9 ** 5 and set(leaves) == {"lol"}
    assert len(bomb_in("department").encode()) < 2000


# A moderate bomb (9**6 leaves, ~5 MB as text) fails fast even without the fix, so the regression is visible
# in-process: before the fix the message quoted the whole expanded value.
@pytest.mark.parametrize("key", ["department", "objectives"])
def test_department_file_with_aliases_is_refused_naming_file_and_line(tmp_path, key):
    path = tmp_path / "billing.yaml"
    text = bomb_in(key, levels=6).replace("x_:", "department: Billing\nx_:") if key != "department" \
        else bomb_in(key, levels=6)
    path.write_text(text)
    with pytest.raises(ObjectiveError) as info:
        load_objectives(path)
    message = str(info.value)
    first_anchor = "line 2, column 5" if key == "department" else "line 3, column 5"
    assert str(path) in message and first_anchor in message
    assert "anchors and aliases" in message and "not allowed in params" in message
    assert len(message) < 400


def test_report_yaml_with_aliases_is_refused_naming_file_and_line(tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text(bomb_in("company", levels=6))
    with pytest.raises(ParamsError) as info:
        load_report_config(path)
    message = str(info.value)
    assert str(path) in message and "line 2, column 5" in message and "anchor &l0" in message
    assert len(message) < 400


@pytest.mark.parametrize("text, words", [
    ("company: *nothing\n", "alias *nothing found"),                       # alias without anchor
    ("base: &b {x: 1}\ncompany: Acme\n", "anchor &b found"),                # an anchor alone is refused too
    ("company: &c Acme\n", "anchor &c found"),
    ("a: {x: 1}\nb:\n  <<: *a\n", "alias *a found"),                        # merge keys need an alias
])
def test_every_anchor_or_alias_is_refused(tmp_path, text, words):
    path = tmp_path / "report.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as info:
        load_params_yaml(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_full_size_bomb_is_refused_quickly_with_bounded_memory(tmp_path):
    """The reported 1.5 KB file (9 levels of 9): in a child limited to 1.5 GB and 60 s, both loaders refuse it
    with a short message (before the fix: 155 s, 9.5 GB, 2 GB of stderr; a MemoryError for report.yaml)."""
    dept, report = tmp_path / "billing.yaml", tmp_path / "report.yaml"
    dept.write_text(bomb_in("department"))
    report.write_text(bomb_in("company"))
    child = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
        from helpers.config import load_report_config
        from helpers.objectives import load_objectives
        from helpers.errors import ParamsError
        for load, path in ((load_objectives, {str(dept)!r}), (load_report_config, {str(report)!r})):
            try:
                load(path)
            except ParamsError as exc:
                print(exc)
            else:
                print("loaded without error")
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60,
                          cwd=repo_root())
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all("anchors and aliases" in line for line in lines), done.stdout[:2000]
    assert len(done.stdout) + len(done.stderr) < 2000


def test_size_is_bounded_and_a_device_is_not_read_forever(tmp_path):
    big = tmp_path / "report.yaml"
    big.write_text("# padding\n" * (MAX_PARAMS_BYTES // 10 + 1) + "company: Acme\n")
    with pytest.raises(ParamsError, match="larger than 1024 KiB"):
        load_report_config(big)
    with pytest.raises(ParamsError, match="larger than"):
        load_params_yaml("/dev/zero")


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text("company: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ParamsError, match=f"more than {MAX_PARAMS_DEPTH} levels"):
        load_report_config(path)
    assert parse_params_yaml("a: " + "[" * 40 + "1" + "]" * 40, "x.yaml")["a"][0][0][0]


def test_plain_params_load_like_safe_load():
    for path in [repo_root() / "params" / "report.yaml", *sorted((repo_root() / "params" / "departments")
                                                               .glob("*.yaml"))]:
        assert load_params_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path
    assert parse_params_yaml("", "empty.yaml") is None


@pytest.mark.parametrize("raw, words", [
    (b"company: Acme\nx: [\n", "malformed YAML at line"),
    (b"company: caf\xe9\n", "not UTF-8 text"),
    (b"company: !!python/object:os.system x\n", "malformed YAML"),
])
def test_other_problems_name_the_file(tmp_path, raw, words):
    path = tmp_path / "report.yaml"
    path.write_bytes(raw)
    with pytest.raises(ParamsError) as info:
        load_params_yaml(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ObjectiveError, match="cannot read the file"):
        load_params_yaml(tmp_path / "nope.yaml", error=ObjectiveError)


# ----------------------------------------------------------------------------- shortened values in messages
def test_long_or_nested_values_in_messages_are_shortened(tmp_path):
    long_name = "A" * 5000
    dept = tmp_path / "billing.yaml"
    dept.write_text(f"department: [{', '.join(['[x, y, z]'] * 500)}]\nobjectives: [{{}}]\n")
    with pytest.raises(ObjectiveError) as info:
        load_objectives(dept)
    assert len(str(info.value)) < 300 and "got [['x', 'y', 'z'], " in str(info.value)
    report = tmp_path / "report.yaml"
    report.write_text(f"company: [{', '.join(['[x, y, z]'] * 500)}]\n")
    with pytest.raises(ParamsError) as info:
        load_report_config(report)
    assert len(str(info.value)) < 300
    report.write_text(f"outcome: {long_name}\n")
    with pytest.raises(ParamsError) as info:
        load_report_config(report)
    assert len(str(info.value)) < 400 and "AAAA" in str(info.value)


@pytest.mark.parametrize("where", ["departments/billing.yaml", "report.yaml"])
def test_runner_refuses_a_bomb_with_exit_2_and_one_short_line(tmp_path, capsys, where):
    """The operator's view (issue 16 item 5): the CLI stops before running anything, exit code 2 (invalid
    input), one short message naming the file and line - no traceback, no megabytes of stderr."""
    from helpers.reports.__main__ import main as cli_main
    from reports_support import FIXTURE_NOTEBOOKS, write_params

    params = write_params(tmp_path, {"billing": "Billing"})
    (params / where).write_text(bomb_in("company" if where == "report.yaml" else "department", levels=6))
    code = cli_main(["run", "--params", str(params), "--out", str(tmp_path / "out"),
                     "--notebooks", str(FIXTURE_NOTEBOOKS), "--data", str(tmp_path / "unused")])
    out = capsys.readouterr()
    assert code == 2 and not (tmp_path / "out").exists()
    assert f"{params / where}: line 2, column 5: anchor &l0 found" in out.err + out.out
    assert len(out.err) + len(out.out) < 1000 and "Traceback" not in out.err
