"""User tokens (SPEC §14): a client app proves which user it speaks for with a JWT the IM
platform signed (`sub` = user id, `exp`), verified here with the platform's public keys.

Only asymmetric algorithms are accepted, and each key admits only its own algorithm (EdDSA for
an Ed25519 key, ES256 for a P-256 key): a token's `alg` header never chooses how it is checked,
so `alg: none` and HS256-signed-with-the-public-key forgeries fail like any bad signature.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PublicKey = Ed25519PublicKey | EllipticCurvePublicKey
ALGORITHMS = ("EdDSA", "ES256")
# A token's subject is a user id of the event contract (SPEC §3).
_USER_ID = re.compile(r"[A-Za-z0-9_.:@+\-]{1,64}")
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class UserTokenSettings(BaseSettings):
    """Where the IM platform's public keys are (`ENGAGE_USER_TOKEN_*`)."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_USER_TOKEN_", extra="ignore")

    public_keys: Path | None = Field(
        default=None,
        description="A PEM file of one or more public keys, or a JWKS JSON file; unset = user "
        "tokens are refused.",
    )
    leeway_s: float = Field(default=30.0, ge=0, le=300, description="Clock skew allowed on exp.")
    issuer: str | None = Field(default=None, description="Required `iss`, if set.")
    audience: str | None = Field(
        default=None,
        description="Required `aud`, if set — set it in production, so a token the platform "
        "issued for another service is not accepted here.",
    )
    max_lifetime_s: float = Field(
        default=86_400.0,
        gt=0,
        le=30 * 86_400,
        description="A token may live at most this long (exp − iat, or exp − now without iat): "
        "a stolen long-lived token is refused.",
    )


class InvalidUserToken(Exception):
    """The token cannot be trusted; the message says why (never the token itself)."""


class KeyFileError(ValueError):
    """The configured public-key file cannot be read as PEM public keys or a JWKS."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str | None
    algorithm: str
    key: PublicKey


def algorithm_of(key: object) -> str:
    """The one algorithm a public key admits (EdDSA or ES256); others are refused."""
    if isinstance(key, Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        return "ES256"
    raise KeyFileError(f"unsupported key type {type(key).__name__}: use Ed25519 or P-256 keys")


def _from_jwks(data: dict[str, Any]) -> list[VerificationKey]:
    keys: list[VerificationKey] = []
    for entry in data.get("keys", []):
        if not isinstance(entry, dict):
            raise KeyFileError("a JWKS entry must be an object")
        if "d" in entry:
            raise KeyFileError("the JWKS holds a private key: configure public keys only")
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except jwt.PyJWTError as exc:
            raise KeyFileError(f"unusable JWK {entry.get('kid')!r}: {exc}") from None
        algorithm = algorithm_of(jwk.key)
        if jwk.algorithm_name not in (algorithm, "Ed25519"):
            raise KeyFileError(f"JWK {jwk.key_id!r}: alg {jwk.algorithm_name} does not fit its key")
        keys.append(VerificationKey(jwk.key_id, algorithm, jwk.key))
    return keys


def _from_pem(raw: bytes) -> list[VerificationKey]:
    keys = []
    for block in _PEM_BLOCK.findall(raw):
        key = load_pem_public_key(block)
        keys.append(VerificationKey(None, algorithm_of(key), key))  # type: ignore[arg-type]
    return keys


def load_keys(path: Path) -> list[VerificationKey]:
    """The public keys in `path`: a JWKS JSON document or PEM `PUBLIC KEY` blocks."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read user-token keys at {path}: {exc.strerror}") from None
    if raw.lstrip().startswith(b"{"):
        try:
            keys = _from_jwks(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise KeyFileError(f"{path}: not a JWKS document ({exc})") from None
    else:
        keys = _from_pem(raw)
    if not keys:
        raise KeyFileError(f"{path} holds no public key")
    return keys


@dataclass(frozen=True, slots=True)
class UserClaims:
    sub: str
    expires_at: int


class UserTokenVerifier:
    """Checks a token's signature, expiry (with a little leeway) and subject."""

    def __init__(
        self,
        keys: list[VerificationKey],
        leeway_s: float = 30.0,
        issuer: str | None = None,
        audience: str | None = None,
        max_lifetime_s: float = 86_400.0,
    ) -> None:
        self._keys = keys
        self._max_lifetime_s = max_lifetime_s
        self._by_kid = {k.kid: k for k in keys if k.kid is not None}
        self._leeway_s = leeway_s
        self._issuer = issuer
        self._audience = audience

    @classmethod
    def from_settings(cls, settings: UserTokenSettings) -> UserTokenVerifier | None:
        """None when no keys are configured (every user token is then refused)."""
        if settings.public_keys is None:
            return None
        return cls(
            load_keys(settings.public_keys),
            settings.leeway_s,
            settings.issuer,
            settings.audience,
            settings.max_lifetime_s,
        )

    def _key_for(self, token: str) -> VerificationKey:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidUserToken("not a well-formed JWT") from None
        kid = header.get("kid")
        if kid is not None:
            found = self._by_kid.get(kid) if isinstance(kid, str) else None
            if found is not None:
                return found
            # A PEM key has no kid of its own: the one unnamed key stands for any kid.
            if not (len(self._keys) == 1 and self._keys[0].kid is None):
                raise InvalidUserToken("signed with an unknown key (kid)")
        if len(self._keys) == 1:
            return self._keys[0]
        raise InvalidUserToken("no kid, and several keys are configured")

    def verify(self, token: str) -> UserClaims:
        """The token's claims; raises InvalidUserToken when it cannot be trusted."""
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],  # this key's algorithm only, whatever `alg` says
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
                leeway=self._leeway_s,
                issuer=self._issuer,
                audience=self._audience,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidUserToken("the token has expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidUserToken(f"the token lacks the '{exc.claim}' claim") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidUserToken(f"the token's alg is not {key.algorithm}") from None
        except jwt.InvalidSignatureError:
            raise InvalidUserToken("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise InvalidUserToken(f"the token is invalid: {exc}") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not _USER_ID.fullmatch(sub):
            raise InvalidUserToken("the token's sub is not a valid user id")
        iat = claims.get("iat")
        start = iat if isinstance(iat, int | float) and not isinstance(iat, bool) else time.time()
        if float(claims["exp"]) - float(start) > self._max_lifetime_s + self._leeway_s:
            raise InvalidUserToken(
                f"the token lives longer than {self._max_lifetime_s:g} s (exp − iat): ask the "
                "platform for a shorter-lived one"
            )
        return UserClaims(sub=sub, expires_at=int(claims["exp"]))
