"""Backup settings (WEBINAR_BACKUP_*): defaults, the backup folder, bad values refused with their name."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import Settings, SettingsError


def test_defaults_keep_five_generations_under_the_data_folder() -> None:
    settings = Settings.from_env({}, data_dir="/srv/webinar")
    assert settings.backup_keep == 5 and settings.backup_daily is False
    assert settings.backups_dir == Path("/srv/webinar/backups")


def test_environment_sets_folder_keep_and_daily() -> None:
    settings = Settings.from_env({"WEBINAR_BACKUP_DIR": "/mnt/backups", "WEBINAR_BACKUP_KEEP": "7",
                                  "WEBINAR_BACKUP_DAILY": "1"})
    assert settings.backups_dir == Path("/mnt/backups") and settings.backup_keep == 7 and settings.backup_daily
    assert Settings.from_env({}, backup_dir="/elsewhere").backups_dir == Path("/elsewhere")


@pytest.mark.parametrize(("env", "message"), [
    ({"WEBINAR_BACKUP_KEEP": "0"}, "WEBINAR_BACKUP_KEEP must be between 1 and 100"),
    ({"WEBINAR_BACKUP_KEEP": "five"}, "WEBINAR_BACKUP_KEEP must be an integer"),
    ({"WEBINAR_BACKUP_DAILY": "sometimes"}, "WEBINAR_BACKUP_DAILY must be a boolean"),
])
def test_bad_values_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
