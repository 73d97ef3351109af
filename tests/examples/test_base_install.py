"""The README's first command on a base install: the embedded store needs no optional extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the modules of the optional extras (kafka, s3, faust, otel): hidden, as if not installed
EXTRAS = ("aiokafka", "boto3", "botocore", "faust", "opentelemetry")


def test_the_quickstart_runs_on_the_embedded_store_without_the_optional_extras(tmp_path):
    hide = "".join(f"sys.modules[{name!r}] = None; " for name in EXTRAS)
    code = (
        f"import runpy, sys; {hide}"
        "sys.argv = ['deerflow', 'run', sys.argv[1], '--param', 'min_amount=20']; "
        "runpy.run_module('deerflow', run_name='__main__')"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "completed run " in ran.stdout
    assert '"orders": 194' in ran.stdout
