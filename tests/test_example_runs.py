"""The helper that runs examples says why a run failed: its command, exit code and outputs."""

from __future__ import annotations

import pytest

from tests.example_runs import run_cli


def test_an_unexpected_exit_code_fails_with_the_command_and_what_it_printed(tmp_path):
    with pytest.raises(pytest.fail.Exception) as failed:
        run_cli("--no-such-option", cwd=tmp_path)
    message = str(failed.value)
    assert "-m deerflow --no-such-option` exited 2, not 0" in message
    assert "--- stderr" in message and "No such option" in message


def test_the_expected_exit_code_returns_what_it_printed(tmp_path):
    ran = run_cli("--no-such-option", cwd=tmp_path, expect=2)
    assert ran.rc == 2 and "No such option" in ran.stderr
