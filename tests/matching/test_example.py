"""examples/waiting_for_events.py runs as a newcomer runs it."""

from __future__ import annotations

from tests.example_runs import run_example


def test_the_waiting_for_events_example_books_the_invoice_and_cancels_the_onboarding(tmp_path):
    lines = run_example("waiting_for_events.py", cwd=tmp_path).lines
    assert lines[0] == "invoice_approval: completed: {'booked': True, 'by': 'ann'}"
    assert lines[1].startswith("onboarding: cancelled: cancel_on: UserDeleted event ")
