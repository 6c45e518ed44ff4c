"""Static checks run with the tests, so CI enforces them: ruff and mypy --strict."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "pipeline", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run("ruff", "format", "--check", "pipeline", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "pipeline")
    assert result.returncode == 0, result.stdout + result.stderr


def test_taking_back_a_reject_keeps_the_counts_whole() -> None:
    from pipeline.run.progress import RunReport

    report = RunReport("crawl", False)
    report.reject("duplicate_code")
    report.reject("duplicate_code")
    report.unreject("duplicate_code")
    assert (report.counts["rejected"], dict(report.rejects_by_reason)) == (1, {"duplicate_code": 1})
    report.unreject("duplicate_code")
    report.unreject("never_counted")  # nothing to take back: no error, no negative count
    assert (report.counts["rejected"], dict(report.rejects_by_reason)) == (0, {})
