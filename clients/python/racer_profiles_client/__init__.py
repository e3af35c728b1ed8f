"""Python client of the racer-profiles HTTP API (and, with the `streamlit`
extra, `racer_profiles_client.streamlit.profile_switcher`)."""

from racer_profiles_client._calls import OPERATIONS, UNSET
from racer_profiles_client._version import __version__
from racer_profiles_client.aio import AsyncClient
from racer_profiles_client.client import Client
from racer_profiles_client.errors import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    ProblemError,
    RateLimited,
    ServiceUnreachable,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from racer_profiles_client.models import (
    AccountErasure,
    AccountSummary,
    DefaultChange,
    ErasureReceipt,
    ExportedEvent,
    FieldError,
    Health,
    HistoryEntry,
    IssuedToken,
    NewAccount,
    Problem,
    Profile,
    Readiness,
    Token,
    Vehicle,
)

__all__ = [
    "OPERATIONS",
    "UNSET",
    "AccountErasure",
    "AccountSummary",
    "AsyncClient",
    "Client",
    "Conflict",
    "DefaultChange",
    "ErasureReceipt",
    "ExportedEvent",
    "FieldError",
    "Forbidden",
    "Gone",
    "Health",
    "HistoryEntry",
    "IssuedToken",
    "NewAccount",
    "NotFound",
    "PreconditionFailed",
    "Problem",
    "ProblemError",
    "Profile",
    "RateLimited",
    "Readiness",
    "ServiceUnreachable",
    "Token",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "Vehicle",
    "__version__",
]
