"""examples/flow_control.py runs as a newcomer would run it."""

from __future__ import annotations

from tests.example_runs import run_example


def test_the_flow_control_example_limits_syncs_and_drops_emails(tmp_path):
    lines = run_example("flow_control.py", cwd=tmp_path).lines
    # two at a time per customer: neither all four at once nor one by one
    assert lines[0] == "8 syncs, at most at once: {'acme': 2, 'globex': 2}"
    assert lines[1] == "['completed', 'completed', 'completed', 'dropped', 'dropped']"
