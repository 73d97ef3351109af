"""Invoices waiting for their approval event, for tests running ``deerflow worker`` processes.

``held``'s wait has a ``where`` that writes this process's pid to $STARTED_FILE and then
waits while $HOLD_FILE exists: the index holds the event it is matching, so a test can kill
the process between the event and the run's resume.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tests.matching.waits import invoices


def hold(event: dict[str, Any]) -> bool:
    """Say which process matches, then wait while the hold file exists."""
    Path(os.environ["STARTED_FILE"]).write_text(str(os.getpid()))
    while Path(os.environ["HOLD_FILE"]).exists():
        time.sleep(0.05)
    return True


plain = invoices("plain", timeout="1h")
held = invoices("held", timeout="1h", where=hold)
brief = invoices("brief", timeout=4)
