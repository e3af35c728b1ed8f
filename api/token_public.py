"""A token as the API shows it, and a token id in a path: one definition for
the tokens router (an account's own tokens) and the admin router (any account's)."""

from __future__ import annotations

from typing import Any

from fastapi import Path

from infrastructure.accounts import TokenInfo

TOKEN_ID = Path(description="the token's id (`id` in the list)", pattern=r"^[0-9a-f]{1,64}$")


def token_public(info: TokenInfo) -> dict[str, Any]:
    """A token as the API shows it (TokenPublic)."""
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
