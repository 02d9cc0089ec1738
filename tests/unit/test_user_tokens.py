"""User tokens (SPEC §14): only tokens the platform signed, unexpired, with a user id as `sub`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engage.tokens import LocalIssuer
from shared.user_tokens import (
    InvalidUserToken,
    KeyFileError,
    UserTokenSettings,
    UserTokenVerifier,
    load_keys,
)


def now() -> int:
    """The wall clock at the moment of use: tokens are checked against it, not at import."""
    return int(time.time())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer.open(tmp_path / "tokens")


@pytest.fixture
def verifier(issuer: LocalIssuer) -> UserTokenVerifier:
    return UserTokenVerifier(load_keys(issuer.jwks_path), leeway_s=30)


def test_a_token_from_the_configured_key_names_its_user(
    issuer: LocalIssuer, verifier: UserTokenVerifier
) -> None:
    claims = verifier.verify(issuer.mint("u1001", ttl_s=60))
    assert claims.sub == "u1001" and claims.expires_at > now()


def test_the_local_issuer_keeps_its_key_across_opens(issuer: LocalIssuer) -> None:
    again = LocalIssuer.open(issuer.directory)
    assert again.kid == issuer.kid
    assert UserTokenVerifier(load_keys(again.jwks_path)).verify(issuer.mint("u1")).sub == "u1"
    assert (issuer.directory / "signing-key.pem").stat().st_mode & 0o077 == 0


def test_an_expired_token_is_refused_beyond_the_leeway(
    issuer: LocalIssuer, verifier: UserTokenVerifier
) -> None:
    assert verifier.verify(issuer.mint("u1", ttl_s=60, now=now() - 80)).sub == "u1"  # 20 s late
    with pytest.raises(InvalidUserToken, match="expired"):
        verifier.verify(issuer.mint("u1", ttl_s=60, now=now() - 200))


def test_a_token_signed_by_another_key_is_refused(
    tmp_path: Path, verifier: UserTokenVerifier
) -> None:
    stranger = LocalIssuer.open(tmp_path / "stranger")
    with pytest.raises(InvalidUserToken, match="unknown key"):
        verifier.verify(stranger.mint("u1"))
    forged = jwt.encode(
        {"sub": "u1", "exp": now() + 60},
        stranger.private_key,
        algorithm="EdDSA",
        headers={"kid": jwt.get_unverified_header(verifier_token(verifier))["kid"]},
    )
    with pytest.raises(InvalidUserToken, match="signature"):
        verifier.verify(forged)


def verifier_token(verifier: UserTokenVerifier) -> str:
    """Any token whose header names the verifier's one key (signature irrelevant)."""
    kid = next(iter(verifier._by_kid))
    header = _b64(orjson.dumps({"alg": "EdDSA", "kid": kid}))
    return f"{header}.{_b64(b'{}')}.{_b64(b'x')}"


def test_alg_none_is_refused(issuer: LocalIssuer, verifier: UserTokenVerifier) -> None:
    header = _b64(orjson.dumps({"alg": "none", "typ": "JWT", "kid": issuer.kid}))
    body = _b64(orjson.dumps({"sub": "u1", "exp": now() + 60}))
    with pytest.raises(InvalidUserToken):
        verifier.verify(f"{header}.{body}.")


def test_hs256_signed_with_the_public_key_is_refused(
    issuer: LocalIssuer, verifier: UserTokenVerifier
) -> None:
    """The classic confusion: the public key used as an HMAC secret."""
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}))
    body = _b64(orjson.dumps({"sub": "u1", "exp": now() + 60}))
    for secret in (
        issuer.jwks_path.read_bytes(),
        issuer.private_key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        ),
        issuer.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
    ):
        signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidUserToken, match="alg"):
            verifier.verify(f"{header}.{body}.{_b64(signature)}")


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_sub_and_exp_are_required(
    issuer: LocalIssuer, verifier: UserTokenVerifier, missing: str
) -> None:
    claims = {"sub": "u1", "exp": now() + 60}
    del claims[missing]
    token = jwt.encode(claims, issuer.private_key, algorithm="EdDSA", headers={"kid": issuer.kid})
    with pytest.raises(InvalidUserToken, match=missing):
        verifier.verify(token)


def test_a_sub_that_is_no_user_id_is_refused(
    issuer: LocalIssuer, verifier: UserTokenVerifier
) -> None:
    with pytest.raises(InvalidUserToken, match="sub"):
        verifier.verify(issuer.mint("has spaces"))


def test_a_sub_with_a_trailing_newline_is_refused(
    issuer: LocalIssuer, verifier: UserTokenVerifier
) -> None:
    with pytest.raises(InvalidUserToken, match="sub"):
        verifier.verify(issuer.mint("alice\n"))


def test_a_token_living_longer_than_allowed_is_refused(
    issuer: LocalIssuer, verifier: UserTokenVerifier
) -> None:
    assert verifier.verify(issuer.mint("u1", ttl_s=86_400)).sub == "u1"
    with pytest.raises(InvalidUserToken, match="lives longer"):
        verifier.verify(issuer.mint("u1", ttl_s=7 * 86_400))


def test_garbage_is_refused(verifier: UserTokenVerifier) -> None:
    for token in ("not-a-jwt", "a.b.c", ""):
        with pytest.raises(InvalidUserToken):
            verifier.verify(token)


def test_es256_keys_from_a_pem_file_verify_es256_tokens_only(tmp_path: Path) -> None:
    private = generate_private_key(SECP256R1())
    pem = tmp_path / "platform.pem"
    pem.write_bytes(
        private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    verifier = UserTokenVerifier(load_keys(pem))
    token = jwt.encode({"sub": "u2", "exp": now() + 60}, private, algorithm="ES256")
    assert verifier.verify(token).sub == "u2"
    other = jwt.encode(
        {"sub": "u2", "exp": now() + 60}, Ed25519PrivateKey.generate(), algorithm="EdDSA"
    )
    with pytest.raises(InvalidUserToken):
        verifier.verify(other)
    # Issuers name their key; a PEM key has no name, so the one key stands for any kid.
    named = jwt.encode(
        {"sub": "u3", "exp": now() + 60}, private, algorithm="ES256", headers={"kid": "k-2026"}
    )
    assert verifier.verify(named).sub == "u3"


def test_a_jwks_with_several_keys_selects_by_kid(tmp_path: Path) -> None:
    a, b = LocalIssuer.open(tmp_path / "a"), LocalIssuer.open(tmp_path / "b")
    keys = [orjson.loads(i.jwks_path.read_bytes())["keys"][0] for i in (a, b)]
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps({"keys": keys}))
    verifier = UserTokenVerifier.from_settings(UserTokenSettings(public_keys=jwks))
    assert verifier is not None
    assert verifier.verify(a.mint("ua")).sub == "ua"
    assert verifier.verify(b.mint("ub")).sub == "ub"
    no_kid = jwt.encode({"sub": "u", "exp": now() + 60}, a.private_key, algorithm="EdDSA")
    with pytest.raises(InvalidUserToken, match="no kid"):
        verifier.verify(no_kid)


def test_a_jwks_holding_a_private_key_is_refused(tmp_path: Path) -> None:
    jwk = orjson.loads(jwt.algorithms.OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate()))
    path = tmp_path / "jwks.json"
    path.write_bytes(orjson.dumps({"keys": [jwk]}))
    with pytest.raises(KeyFileError, match="private"):
        load_keys(path)


def test_no_configured_keys_means_no_verifier_and_a_missing_file_is_an_error(
    tmp_path: Path,
) -> None:
    assert UserTokenVerifier.from_settings(UserTokenSettings(public_keys=None)) is None
    with pytest.raises(KeyFileError, match="cannot read"):
        UserTokenVerifier.from_settings(UserTokenSettings(public_keys=tmp_path / "nope.json"))
