"""Who may post what (SPEC §14): user tokens their own user's client events, relays client
types, platform keys everything, narrowed keys their listed types, importers history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.ingest.domain.authority import (
    CLIENT_EVENT_TYPES,
    USER_TOKEN_EVENT_TYPES,
    key_speaker,
    user_speaker,
)
from services.ingest.domain.intake import screen
from shared.auth import Principal, Role
from shared.contract import EVENT_TYPES, MAX_AGE, MAX_FUTURE, Rejection, WindowContext
from tests.builders import NOW, make_event

CTX = WindowContext(NOW, MAX_AGE, MAX_FUTURE)
SERVER_TYPES = set(EVENT_TYPES) - USER_TOKEN_EVENT_TYPES


def key(*roles: Role, types: frozenset[str] | None = None) -> Principal:
    return Principal("k1", "k", frozenset(roles), 100.0, event_types=types)


def code_of(speaker_judge: object, kind: str, **overrides: object) -> str | None:
    event = make_event(kind, at=NOW - timedelta(hours=1), **overrides)
    result = screen(event, CTX, speaker_judge)  # type: ignore[arg-type]
    return result.rejected[0].code if result.rejected else None


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_a_user_token_posts_its_own_client_events_and_dissolutions_only(kind: str) -> None:
    judge = user_speaker("u1", 20.0).judge
    expected = None if kind in USER_TOKEN_EVENT_TYPES else "type_not_allowed"
    assert code_of(judge, kind, user_id="u1") == expected
    other = "user_mismatch" if kind in USER_TOKEN_EVENT_TYPES else "type_not_allowed"
    assert code_of(judge, kind, user_id="u2") == other


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_a_relay_key_posts_client_types_for_anyone(kind: str) -> None:
    judge = key_speaker(key(Role.INGEST), importing=False).judge
    assert code_of(judge, kind, user_id="anyone") == (
        None if kind in CLIENT_EVENT_TYPES else "type_not_allowed"
    )


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_platform_admin_and_importer_keys_post_every_type(kind: str) -> None:
    for speaker in (
        key_speaker(key(Role.PLATFORM), importing=False),
        key_speaker(key(Role.ADMIN), importing=False),
        key_speaker(key(Role.IMPORTER), importing=True),
    ):
        assert code_of(speaker.judge, kind) is None


def test_a_narrowed_key_posts_only_its_types_and_says_so() -> None:
    speaker = key_speaker(key(Role.PLATFORM, types=frozenset({"points"})), importing=False)
    assert code_of(speaker.judge, "points") is None
    event = make_event("message", at=NOW - timedelta(hours=1))
    rejection = speaker.judge(screen(event, CTX).accepted[0].event)
    assert isinstance(rejection, Rejection) and "narrowed to points" in rejection.message


def test_narrowing_never_widens_a_relay() -> None:
    speaker = key_speaker(key(Role.INGEST, types=frozenset({"points", "login"})), importing=False)
    assert speaker.allowed_types == {"login"}


def test_stamps_name_who_vouched() -> None:
    assert key_speaker(key(Role.INGEST), importing=False).authority == "relay"
    assert key_speaker(key(Role.PLATFORM), importing=False).authority == "platform"
    assert key_speaker(key(Role.IMPORTER), importing=True).authority == "import"
    user = user_speaker("u9", 20.0)
    assert (user.authority, user.source, user.rate_key) == ("user", "user:u9", "user:u9")


def test_server_types_need_a_platform_key() -> None:
    assert {"group_created", "group_owner_changed", "points", "bonus_card"} == SERVER_TYPES
    message = user_speaker("u1", 1.0).judge
    event = make_event("points", at=NOW - timedelta(hours=1))
    rejection = message(screen(event, CTX).accepted[0].event)
    assert isinstance(rejection, Rejection) and "needs a platform key" in rejection.message
