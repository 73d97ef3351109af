"""examples/waiting_for_events.py runs as a newcomer runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_waiting_for_events_example_books_the_invoice_and_cancels_the_onboarding(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "waiting_for_events.py")],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "invoice_approval: completed: {'booked': True, 'by': 'ann'}"
    assert lines[1].startswith("onboarding: cancelled: cancel_on: UserDeleted event ")
