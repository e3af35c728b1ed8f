"""Domain errors: every rule the aggregates enforce raises one of these."""

from __future__ import annotations


class DomainError(Exception):
    """A command was refused by a domain rule."""


class InvalidValue(DomainError):
    """A value breaks a rule of its field (the API answers 422)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ProfileNotFound(DomainError):
    """No such profile in this account (another account's profile is not found too)."""


class VehicleNotFound(DomainError):
    """The profile has no vehicle with that id."""


class IllegalState(DomainError):
    """The command does not apply to the aggregate's current state (HTTP 409)."""


class ProfileArchived(IllegalState):
    """Archived profiles cannot be changed or made default; restore them first."""


class ProfileExists(IllegalState):
    """A profile with the given id already exists."""


class ProfileNotArchived(IllegalState):
    """Only an archived profile can be restored."""


class NotAnActiveMember(IllegalState):
    """The profile is not an active profile of the account."""


class InvalidSuccessor(IllegalState):
    """The successor named when archiving the default is not usable."""


class ProfileErased(DomainError):
    """The profile was erased: its personal data is gone for good (HTTP 410)."""


class PlaintextHistory(IllegalState):
    """The profile has events stored before personal data was encrypted: erasing
    it would leave their plaintext behind, so erasure is refused (never partial)."""


class ConcurrencyConflict(DomainError):
    """Concurrent writers kept winning; the command gave up after its retries."""


class VersionMismatch(DomainError):
    """The client's expected version (If-Match) is not the current one."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"expected version {expected}, current version is {current}")
        self.expected = expected
        self.current = current
