"""WEBINAR_ICE_SERVERS (server/settings.py): STUN/TURN servers of webcam rooms."""

from __future__ import annotations

import pytest

from server.settings import Settings, SettingsError


def test_unset_means_host_candidates_only() -> None:
    assert Settings.from_env({}).ice_server_list == []


def test_stun_and_turn_servers_are_read() -> None:
    env = {"WEBINAR_ICE_SERVERS": '[{"urls": "stun:turn.example.org:3478"}, '
                                  '{"urls": ["turn:turn.example.org:3478?transport=udp", '
                                  '"turns:turn.example.org:443?transport=tcp"], "username": "u", "credential": "p"}]'}
    servers = Settings.from_env(env).ice_server_list
    assert servers[0] == {"urls": "stun:turn.example.org:3478"}
    assert servers[1]["username"] == "u" and len(servers[1]["urls"]) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize("raw, message", [
    ("not json", "JSON list"),
    ('{"urls": "stun:x"}', "JSON list"),
    ('[{"urls": "http://x"}]', "bad urls"),
    ('[{"urls": []}]', "bad urls"),
    ('[{"urls": "turn:x:3478"}]', "username and credential"),
])
def test_bad_values_are_refused_with_the_setting_named(raw: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_env({"WEBINAR_ICE_SERVERS": raw})
    assert "WEBINAR_ICE_SERVERS" in str(refused.value)
