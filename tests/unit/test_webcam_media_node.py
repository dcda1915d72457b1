"""WEBINAR_ENABLE_WEBCAM (server/settings.py): which node takes webcam rooms' speakers, and
what a node without webcam media refuses (rooms/webcam/speak.py, rooms/ws.py).
The refusals themselves, through nginx and on a node directly: tests/integration/test_two_nodes.py."""

from __future__ import annotations

import typing

import pytest

from rooms import messages as m
from rooms.webcam.speak import (
    MEDIA_NODE_CODE,
    MEDIA_NODE_STATUS,
    media_node_refusal,
    media_node_response,
)
from rooms.ws import MEDIA_MESSAGES
from server.settings import Settings, SettingsError


def test_on_by_default_so_one_node_runs_everything() -> None:
    settings = Settings.from_env({})
    assert settings.enable_webcam is True
    assert media_node_refusal(settings) is None and media_node_response(settings) is None


def test_off_names_the_node_and_the_setting() -> None:
    settings = Settings.from_env({"WEBINAR_ENABLE_WEBCAM": "0", "WEBINAR_NODE_NAME": "node-b"})
    assert settings.enable_webcam is False
    message = media_node_refusal(settings)
    assert message is not None and "(node-b)" in message and "WEBINAR_ENABLE_WEBCAM=0" in message
    assert "/ws/speak/" in message
    response = media_node_response(settings)
    assert response is not None and response.status_code == MEDIA_NODE_STATUS == 421
    assert MEDIA_NODE_CODE.encode() in response.body and response.headers["cache-control"] == "no-store"
    unnamed = media_node_refusal(Settings.from_env({"WEBINAR_ENABLE_WEBCAM": "false"}))
    assert unnamed is not None and "this server does not" in unnamed


def test_a_bad_value_is_refused_with_the_setting_named() -> None:
    with pytest.raises(SettingsError, match="WEBINAR_ENABLE_WEBCAM must be a boolean"):
        Settings.from_env({"WEBINAR_ENABLE_WEBCAM": "maybe"})


def test_every_webcam_media_message_is_gated() -> None:
    """A new rtc.*, stage.*, content.* or clip.* message must be refused off the media node too."""
    tags = {cls: cls.__struct_config__.tag for cls in typing.get_args(m.AnyClientMessage)}
    media = {cls for cls, tag in tags.items() if isinstance(tag, str) and tag.split(".")[0] in
             ("rtc", "stage", "content", "clip")}
    assert len(media) >= 14 and media == set(MEDIA_MESSAGES)
