"""Path parameters whose patterns keep the routes independent of the order in
which the app includes its routers.

Starlette tries the routes in that order, and the first whose pattern matches
the path answers it. A plain `{profile_id}` matches any segment, so wherever
`GET /v1/profiles/{profile_id}` came first it would capture
`GET /v1/profiles/stream` (another router's) and `/v1/profiles/default`, and
answer 422 (not a UUID). Its pattern leaves those names to their own routes.
Every other segment still matches, so a malformed id is answered by validation
(422, with the field), never by a 404. OpenAPI shows the path as
`/v1/profiles/{profile_id}`: a pattern's name is not part of the document.

tests/unit/test_routing.py builds the app with its routers in other orders and
checks that every operation is still answered by its own endpoint: a new fixed
path next to `{profile_id}` that is not listed here fails it."""

from __future__ import annotations

from starlette.convertors import StringConvertor, register_url_convertor

# The fixed paths of GET /v1/profiles/<name> (profiles.router's /default, stream.router's /stream).
PROFILE_SUBPATHS = ("default", "stream")


class _ProfileIdSegment(StringConvertor):
    """A path segment that is not one of PROFILE_SUBPATHS; validation types it (UUID)."""

    regex = rf"(?!(?:{'|'.join(PROFILE_SUBPATHS)})$)[^/]+"


register_url_convertor("profile_id", _ProfileIdSegment())

# Only GET has fixed siblings: PATCH and DELETE /v1/profiles/stream stay answered as a
# malformed profile id (422), as they always were, so those routes keep the plain `{profile_id}`.
GET_PROFILE_PATH = "/{profile_id:profile_id}"
