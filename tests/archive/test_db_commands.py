"""``wa-sessions db ...`` through ``cli.main``: migrations, retention, erasure's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from wa_sessions.archive import db
from wa_sessions.cli import main


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> str:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.chdir(tmp_path)
    return url


def test_upgrade_downgrade_and_current_move_the_database(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command does what it says and exits 0."""
    assert main(["db", "upgrade"]) == 0
    assert db.current_revision(url) == db.head_revision(url)
    assert main(["db", "downgrade", "--revision", "base"]) == 0
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip().endswith("base")


def test_retention_prints_what_it_deleted_and_refuses_a_non_positive_age(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero days is a usage error (exit 2), not a wipe of the archive."""
    main(["db", "upgrade"])
    assert main(["db", "retention", "--older-than-days", "30"]) == 0
    assert "deleted 0 archived session(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(["db", "retention", "--older-than-days", "0"])
    assert refused.value.code == 2


def test_erase_refuses_a_number_that_does_not_parse(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 and a message on stderr."""
    main(["db", "upgrade"])
    assert main(["db", "erase", "--phone", "not-a-phone"]) == 2
    assert "erase:" in capsys.readouterr().err
