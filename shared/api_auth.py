"""Who is calling, in one place (SPEC §7, §14): `Authorization: Bearer <credential>` is an API
key (`eng_…`, a server: a `Principal` with roles) or else a user token (a JWT the IM platform
signed: a `UserCaller` who speaks for its own user only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import State

from shared.auth import KEY_PREFIX, KeyCache, Principal, Role, TokenBucket
from shared.errors import Forbidden, RateLimited, Unauthorized
from shared.user_tokens import (
    InvalidUserToken,
    UserTokenSettings,
    UserTokenVerifier,
)

BEARER_DESCRIPTION = (
    "An Engage API key (`Bearer eng_…`, for servers: roles decide what it may do), or on the "
    "routes that admit one a user token (`Bearer <JWT>` signed by the IM platform, `sub` = the "
    "user id, with `exp`): a client app speaks for its own user only (SPEC §14)."
)
bearer = HTTPBearer(auto_error=False, description=BEARER_DESCRIPTION)


@dataclass(frozen=True, slots=True)
class UserCaller:
    """A client app holding a user token: it speaks for user `sub` and no one else."""

    sub: str

    @property
    def source(self) -> str:
        """How its events name their source (a key id for keys)."""
        return f"user:{self.sub}"


Caller = Principal | UserCaller


def user_token_verifier(state: State) -> UserTokenVerifier | None:
    """The app's verifier (`app.state.user_tokens`), else one from ENGAGE_USER_TOKEN_* read
    once on first use; None = no keys configured, so user tokens are refused."""
    if not hasattr(state, "user_tokens"):
        state.user_tokens = UserTokenVerifier.from_settings(UserTokenSettings())
    verifier: UserTokenVerifier | None = state.user_tokens
    return verifier


@dataclass(frozen=True, slots=True)
class RequestRate:
    """Requests per second per caller (`app.state.request_rate`; ingest limits events)."""

    per_s: float
    bucket: TokenBucket


def _charge(request: Request, caller: Caller) -> Caller:
    """One token of the caller's request rate; 429 with Retry-After when spent. Per replica,
    like ingest's limiter: N replicas admit up to N times the rate (docs/operations.md)."""
    rate: RequestRate | None = getattr(request.app.state, "request_rate", None)
    if rate is not None:
        who = caller.key_id if isinstance(caller, Principal) else caller.source
        wait_s = rate.bucket.take(who, rate.per_s, 1)
        if wait_s > 0:
            raise RateLimited(
                f"over this caller's rate of {rate.per_s:g} requests/s",
                retry_after_s=int(wait_s + 0.999),
            )
    return caller


async def authenticate(request: Request) -> Caller:
    """The caller behind `Authorization: Bearer …`: a key's principal or a token's user; 401
    when it is missing, unknown, expired or not signed by a configured key; 429 over the
    caller's request rate."""
    return _charge(request, await _authenticate(request))


async def _authenticate(request: Request) -> Caller:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorized()
    if credential.startswith(KEY_PREFIX):
        cache: KeyCache = request.app.state.key_cache
        principal = await cache.resolve(credential)
        if principal is None:
            raise Unauthorized()
        return principal
    verifier = user_token_verifier(request.app.state)
    if verifier is None:
        raise Unauthorized("missing or unknown API key (user tokens are not configured here)")
    try:
        return UserCaller(verifier.verify(credential).sub)
    except InvalidUserToken as exc:
        raise Unauthorized(f"user token refused: {exc}") from None


# Documents the scheme on routes that authenticate inline (hot paths skip dependency solving).
BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


async def authorize(request: Request, role: Role | None = None) -> Principal:
    """The caller's key principal, checked for `role`; a user token is refused (403) here."""
    caller = await authenticate(request)
    if isinstance(caller, UserCaller):
        needed = f"an API key with the '{role}' role" if role else "an API key"
        raise Forbidden(
            f"a user token speaks for its user only; this operation needs {needed}",
            code="missing_role",
        )
    if role is not None and not caller.has(role):
        raise Forbidden(f"this key lacks the '{role}' role", code="missing_role")
    return caller


def require_user_or(*roles: Role) -> Callable[..., Awaitable[Caller]]:
    """A dependency that admits any valid user token (the route checks what it may do for its
    user) and keys carrying any of `roles` (or `admin`)."""

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Caller:
        caller = await authenticate(request)
        if isinstance(caller, Principal) and not any(caller.has(role) for role in roles):
            raise Forbidden(
                "this operation needs a user token or a key with one of the roles "
                + ", ".join(roles),
                code="missing_role",
            )
        return caller

    dependency.__name__ = "require_user_or_" + "_".join(roles)
    return dependency


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys carrying `role` (or `admin`)."""

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        return await authorize(request, role)

    dependency.__name__ = f"require_{role}"
    return dependency


def require_any(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys carrying any of `roles` (or `admin`)."""

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        principal = await authorize(request)
        if not any(principal.has(role) for role in roles):
            raise Forbidden(
                f"this key needs one of the roles {', '.join(roles)}", code="missing_role"
            )
        return principal

    dependency.__name__ = "require_any_" + "_".join(roles)
    return dependency


RequireViewer = Annotated[Principal, Depends(require(Role.VIEWER))]
RequireCampaignOwner = Annotated[Principal, Depends(require(Role.CAMPAIGN_OWNER))]
RequireApprover = Annotated[Principal, Depends(require(Role.APPROVER))]
RequireAdmin = Annotated[Principal, Depends(require(Role.ADMIN))]
# A group's owner (their user token) or a platform key acting for them (SPEC §14).
RequireUserOrPlatform = Annotated[Caller, Depends(require_user_or(Role.PLATFORM))]
# Campaign reads: whoever works on campaigns or watches them.
RequireCampaignReader = Annotated[
    Principal, Depends(require_any(Role.VIEWER, Role.CAMPAIGN_OWNER, Role.APPROVER))
]
