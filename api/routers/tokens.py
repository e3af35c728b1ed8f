"""/v1/tokens: a token holder lists and revokes its own account's tokens.

Issuing tokens is an admin's task (api/routers/admin.py): a leaked owner token
must not be able to mint fresh ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import ContainerDep, PrincipalDep
from api.openapi import problems
from api.problems import Problem, not_found
from api.schemas import TokenList
from api.token_public import TOKEN_ID, token_public

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


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
