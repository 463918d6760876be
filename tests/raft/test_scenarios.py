"""Golden-file scenario tests of the Raft core (tests/raft/testdata/*.txt).

Regenerate the goldens after a deliberate change with::

    PYETCD_REWRITE=1 pytest tests/raft/test_scenarios.py

then read the diff: the golden files are the reviewed record of correct behaviour.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from datadriven import run_file
from interaction import InteractionEnv

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_there_are_scenarios() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    env = InteractionEnv()
    run_file(path, env.handle, rewrite=os.environ.get("PYETCD_REWRITE") == "1")
