"""/v1/tokens: a token holder lists and revokes its own account's tokens.

Issuing tokens is an admin's task (api/routers/admin.py): a leaked owner token
must not be able to mint fresh ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from api.deps import ContainerDep, PrincipalDep
from api.openapi import problems
from api.problems import Problem, not_found
from api.schemas import TokenList
from infrastructure.accounts import TokenInfo

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])

TOKEN_ID = Path(description="the token's id (`id` in the list)", pattern=r"^[0-9a-f]{1,64}$")


def token_public(info: TokenInfo) -> dict[str, Any]:
    """A token as the API shows it (TokenPublic); the one mapping for both routers."""
    return {
        "id": info.token_id,
        "account_id": str(info.account_id),
        "name": info.name,
        "role": info.role,
        "created_at": info.created_at.isoformat(),
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }


def token_not_found(token_id: str) -> Problem:
    return not_found(f"no live token {token_id} in this account")


@router.get(
    "",
    response_model=TokenList,
    summary="The account's tokens",
    description="The tokens of the caller's account, oldest first (never their secrets).",
    responses=problems(401, 422, 503),
)
def list_tokens(
    principal: PrincipalDep,
    container: ContainerDep,
    include_revoked: Annotated[bool, Query(description="list revoked tokens too")] = False,
) -> dict[str, Any]:
    infos = container.accounts.tokens(principal.account_id, include_revoked=include_revoked)
    return {"items": [token_public(i) for i in infos]}


@router.delete(
    "/{token_id}",
    status_code=204,
    summary="Revoke a token",
    description=(
        "Revokes one of the account's live tokens (the caller's own too): within a second every API"
        " process answers 401 to it and ends its open streams."
    ),
    responses={204: {"description": "Revoked."}, **problems(401, 404, 422, 503)},
)
def revoke_token(
    token_id: Annotated[str, TOKEN_ID], principal: PrincipalDep, container: ContainerDep
) -> Response:
    if not container.accounts.revoke(token_id, principal.account_id):
        raise token_not_found(token_id)
    return Response(status_code=204)
