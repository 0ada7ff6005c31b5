"""Progress lines (items done / total, rate, ETA) and the session guard that no started process outlives the suite."""

from __future__ import annotations

import logging

import pytest

from mpq_assets.pipeline import progress
from mpq_assets.pipeline.progress import Progress, echo_to


@pytest.mark.fast
def test_progress_reports_counts_rate_and_eta(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    clock = iter(float(10 * t) for t in range(1000))  # 10 s a step: slow enough for the terminal
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    log = logging.getLogger("mpq.test.progress")
    echoed: list[str] = []
    with caplog.at_level(logging.INFO, logger="mpq.test.progress"), echo_to(echoed.append):
        p = Progress(log, "exp/quality", 40, interval_s=1e9)
        for done in range(1, 41):
            p.step(done)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and lines[0].startswith("exp/quality: 4/40 items (") and "ETA" in lines[0]
    assert lines[-1] == "exp/quality: 40/40 items in 6m40s"
    assert echoed == [f"    {line}" for line in lines]
    slow = Progress(log, "slow", 1000, interval_s=50)  # a line every 50 s although 10% is 100 items
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mpq.test.progress"):
        for done in range(1, 21):
            slow.step(done)
    assert len(caplog.records) == 4 and "ETA 2h45m" in caplog.records[0].getMessage()


@pytest.mark.fast
def test_the_session_guard_sees_children_and_the_orphans_they_leave() -> None:
    import subprocess
    import time

    from mpq_assets_tests.conftest import _strays

    baseline = {p.pid for p in _strays(set())}
    child = subprocess.Popen(["sleep", "30"])
    subprocess.run(["sh", "-c", "sleep 31 &"], check=True, stdout=subprocess.DEVNULL)  # sh exits: an orphan
    time.sleep(0.3)
    try:
        found = {" ".join(p.cmdline()) for p in _strays(baseline)}
        assert {"sleep 30", "sleep 31"} <= found
    finally:
        for proc in _strays(baseline):
            proc.kill()
        child.wait()
    time.sleep(0.3)
    assert not [p for p in _strays(baseline) if "sleep 3" in " ".join(p.cmdline())]
