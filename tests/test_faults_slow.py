"""bench/faults.py end to end with small sizes: every fault-injection case (kill, concurrency, corrupt cache, torn
folder, faulty server) holds. Slow: about 3-4 minutes of real CLI runs on the tiny model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_every_fault_injection_case_holds():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "faults.py"), "--quick"], capture_output=True,
                          text=True, cwd=ROOT, timeout=1200)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| case")]
    assert len(rows) == 7, proc.stdout + proc.stderr[-2000:]
    failed = [r for r in rows if r.split(" | ")[2] != "yes"]
    assert not failed, "\n".join(failed)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    for case in ("kill", "concurrency", "corrupt cache", "torn folder", "faulty server"):
        assert any(r.startswith(f"| {case}") for r in rows), case
