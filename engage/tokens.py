"""A local stand-in for the IM platform's token issuer (SPEC §14): an Ed25519 signing key kept
in the stack's state directory, its public half published as a JWKS for ingest and rewards,
and user tokens minted with it — for the demo, the simulator and the tests. Production tokens
come from the IM platform; only its public keys are configured there."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

PRIVATE_KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"


@dataclass(frozen=True)
class LocalIssuer:
    """Mints user tokens with a local Ed25519 key; `jwks_path` is what the services verify with."""

    directory: Path
    private_key: Ed25519PrivateKey
    kid: str

    @property
    def jwks_path(self) -> Path:
        return self.directory / JWKS_FILE

    @classmethod
    def open(cls, directory: Path) -> LocalIssuer:
        """The issuer in `directory`, its key created on first use (private key mode 0600)."""
        directory.mkdir(parents=True, exist_ok=True)
        key_path = directory / PRIVATE_KEY_FILE
        if key_path.exists():
            loaded = load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError(f"{key_path} is not an Ed25519 private key")
            private_key = loaded
        else:
            private_key = Ed25519PrivateKey.generate()
            pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        public_jwk = orjson.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private_key.public_key()))
        kid = _thumbprint(public_jwk)
        issuer = cls(directory, private_key, kid)
        jwks = {"keys": [{**public_jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}]}
        tmp = issuer.jwks_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(jwks, option=orjson.OPT_INDENT_2))
        tmp.replace(issuer.jwks_path)
        return issuer

    def mint(self, user_id: str, ttl_s: float = 3600.0, now: float | None = None) -> str:
        """A user token for `user_id`, valid for `ttl_s` seconds."""
        issued = int(time.time() if now is None else now)
        claims = {"sub": user_id, "iat": issued, "exp": issued + int(ttl_s)}
        return jwt.encode(claims, self.private_key, algorithm="EdDSA", headers={"kid": self.kid})


def _thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint of an OKP key: a stable kid for it."""
    canonical = orjson.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]})
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
