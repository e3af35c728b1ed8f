"""/v1/admin: what only an admin token may do: create accounts, issue and
revoke any account's tokens. Every route here depends on `AdminDep`; new admin
operations (e.g. erasing an account) join this router."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContainerDep, PrincipalDep, ReasonHeaderDep
from api.openapi import problems
from api.problems import Problem, invalid, not_found
from api.schemas import (
    AccountCreate,
    AccountErasureReceipt,
    AccountIssued,
    TokenCreate,
    TokenIssued,
    TokenList,
)
from api.token_public import TOKEN_ID, token_public
from domain.service import Cause
from infrastructure.account_erasure import NoSuchAccount, erase_account
from infrastructure.accounts import Principal, TokenError

ADMIN_PROBLEMS = problems(401, 403, 422, 503)


async def require_admin(principal: PrincipalDep) -> Principal:
    if principal.role != "admin":
        raise Problem.of("forbidden", f"a {principal.role} token cannot administer accounts")
    return principal


router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def _invalid(error: TokenError) -> Problem:
    if error.field == "account_id":
        return not_found(error.reason)
    return invalid(error.field, error.reason)


def _issued(container: Any, token_id: str, token: str) -> dict[str, Any]:
    """The new token as listed, with its secret (shown this once)."""
    info = container.accounts.token(token_id)
    if info is None:  # revoked the instant it was made
        raise not_found(f"token {token_id} is gone already")
    return {**token_public(info), "token": token}


@router.post(
    "/accounts",
    status_code=201,
    response_model=AccountIssued,
    summary="Create an account",
    description="Creates an account (owner, auditor or admin) and its first token, shown this once.",
    responses=ADMIN_PROBLEMS,
)
def create_account(body: AccountCreate, container: ContainerDep) -> dict[str, Any]:
    try:
        account = container.accounts.create(
            body.name, body.role, token_name=body.token_name, expires_at=body.token_expires_at
        )
    except TokenError as e:
        raise _invalid(e) from None
    return {
        "id": str(account.account_id),
        "name": account.name,
        "role": account.role,
        "token": _issued(container, account.token_id, account.token),
    }


@router.get(
    "/accounts/{account_id}/tokens",
    response_model=TokenList,
    summary="An account's tokens",
    description="Any account's tokens, oldest first (never their secrets).",
    responses=ADMIN_PROBLEMS,
)
def list_account_tokens(
    account_id: UUID,
    container: ContainerDep,
    include_revoked: Annotated[bool, Query(description="list revoked tokens too")] = False,
) -> dict[str, Any]:
    infos = container.accounts.tokens(account_id, include_revoked=include_revoked)
    return {"items": [token_public(i) for i in infos]}


@router.post(
    "/accounts/{account_id}/tokens",
    status_code=201,
    response_model=TokenIssued,
    summary="Issue a token",
    description=(
        "Issues a named token (one per device or app) for an account, with an optional expiry; the"
        " token is shown this once. Names are unique among the account's live tokens."
    ),
    responses=problems(401, 403, 404, 422, 503, s404="No such account."),
)
def issue_token(account_id: UUID, body: TokenCreate, container: ContainerDep) -> dict[str, Any]:
    try:
        token = container.accounts.issue(account_id, body.name, body.expires_at)
    except TokenError as e:
        raise _invalid(e) from None
    return _issued(container, token.token_id, token.token)


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    summary="Revoke any token",
    description="Revokes a live token of any account: every API process refuses it within a second.",
    responses={204: {"description": "Revoked."}, **problems(401, 403, 404, 422, 503)},
)
def revoke_any_token(token_id: Annotated[str, TOKEN_ID], container: ContainerDep) -> Response:
    if not container.accounts.revoke(token_id):
        raise not_found(f"no live token {token_id}")
    return Response(status_code=204)


@router.delete(
    "/accounts/{account_id}",
    name="erase_account",
    response_model=AccountErasureReceipt,
    summary="Erase an account",
    description=(
        "Erases every profile of the account (as `DELETE /v1/profiles/{id}` does), destroys the"
        " account's own key, revokes every token of the account and removes its name. Refused as a"
        " whole (409 `plaintext-history`) when a profile has events stored before encryption."
        " Idempotent: erasing it again erases nothing more and answers the same way."
    ),
    responses=problems(401, 403, 404, 409, 422, 503, s404="No such account."),
)
async def erase_account_route(
    request: Request,
    account_id: str,
    admin: Annotated[Principal, Depends(require_admin)],
    container: ContainerDep,
    reason: ReasonHeaderDep,
) -> JSONResponse:
    cause = Cause(admin.account_id, reason, request.state.request_id)
    try:
        done = await run_in_threadpool(erase_account, container.app, container.accounts, account_id, cause)
    except NoSuchAccount:
        raise not_found(f"no account {account_id}") from None
    body: dict[str, Any] = {
        "account_id": done.account_id,
        "erased_profiles": [str(p) for p in done.erased],
        "already_erased": [str(p) for p in done.already],
        "tokens_revoked": done.tokens_revoked,
        "position": done.position,
    }
    return JSONResponse(body, headers={"X-Position": str(done.position)})
