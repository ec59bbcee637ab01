"""The suite's own scheduling: the files it starts first exist (a rename would drop one)."""

from __future__ import annotations

from tests.conftest import LONGEST_FILES, REPO


def test_every_file_started_first_exists_once() -> None:
    missing = [name for name in LONGEST_FILES if not (REPO / "tests" / name).is_file()]
    assert not missing
    assert len(set(LONGEST_FILES)) == len(LONGEST_FILES)


def test_test_sh_runs_whole_files_in_collection_order() -> None:
    script = (REPO / "scripts" / "test.sh").read_text()
    assert "--dist loadfile --no-loadscope-reorder" in script
