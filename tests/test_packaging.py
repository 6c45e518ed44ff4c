"""The package holds the product only, and `pip install .` gives a working `pipeline demo`.

The wheel is built from the checkout (as `pip install .` builds it) and its file list is checked:
the demo site ships as package data; benchmarks, the page generator and test servers do not.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, SITE


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_ships_the_demo_site(wheel_files: set[str]) -> None:
    site = {
        "pipeline/demo/site/" + path.relative_to(SITE).as_posix()
        for path in SITE.rglob("*")
        if path.is_file()
    }
    assert site, "the demo site is empty"
    assert site <= wheel_files, sorted(site - wheel_files)[:5]
    assert "pipeline/extract/vocabulary.toml" in wheel_files
    assert "pipeline/py.typed" in wheel_files


def test_the_wheel_holds_the_product_only(wheel_files: set[str]) -> None:
    tops = {name.split("/", 1)[0] for name in wheel_files}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"pipeline"}
    names = {Path(name).stem for name in wheel_files if name.endswith(".py")}
    assert not names & {"bench", "synth", "faultserver"}
    # The expected records of the golden pages are test data, not part of the demo site.
    assert not any(name.endswith(".json") for name in wheel_files)
