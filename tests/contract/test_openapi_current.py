"""openapi.json at the repository root is what `racer-profiles openapi` writes
now, the app serves that same document, and the document is complete: every
operation lists the statuses, headers and problem schema it can answer with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import cli
from infrastructure.container import Container

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "openapi.json"
REGENERATE = "run `.venv/bin/racer-profiles openapi --out openapi.json` and commit the result"
PROBLEM = "application/problem+json"
COMMANDS = {
    "create_profile",
    "set_default",
    "rename_profile",
    "archive_profile",
    "restore_profile",
    "add_vehicle",
    "change_vehicle",
    "remove_vehicle",
}
IF_MATCH = COMMANDS - {"create_profile"}


def _written_now(tmp_path: Path) -> str:
    out = tmp_path / "openapi.json"
    result = CliRunner().invoke(cli, ["openapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(CHECKED_IN.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_the_checked_in_document_is_what_the_command_writes_now(tmp_path: Path) -> None:
    assert CHECKED_IN.exists(), f"no openapi.json at the repository root: {REGENERATE}"
    now = _written_now(tmp_path)
    assert CHECKED_IN.read_text(encoding="utf-8") == now, f"openapi.json is out of date: {REGENERATE}"


def test_the_command_is_deterministic_and_its_check_mode_reports_drift(tmp_path: Path) -> None:
    first = _written_now(tmp_path)
    assert first == _written_now(tmp_path)
    assert first.endswith("}\n") and not first.endswith("\n\n")
    assert list(json.loads(first)) == sorted(json.loads(first))  # sorted keys
    stale = tmp_path / "stale.json"
    stale.write_text(first.replace('"create_profile"', '"createProfile"'), encoding="utf-8")
    result = CliRunner().invoke(cli, ["openapi", "--out", str(stale), "--check"])
    assert result.exit_code == 1 and "racer-profiles openapi" in result.output, result.output
    assert (
        CliRunner().invoke(cli, ["openapi", "--out", str(tmp_path / "openapi.json"), "--check"]).exit_code
        == 0
    )


def test_the_live_app_serves_the_checked_in_document(
    module_container: Container, document: dict[str, Any]
) -> None:
    response = TestClient(create_app(module_container)).get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == document, f"the served document differs from openapi.json: {REGENERATE}"


def test_operation_ids_are_the_stable_function_names(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))
    assert COMMANDS | {
        "list_profiles",
        "get_profile",
        "get_default",
        "profile_history",
        "default_timeline",
        "export_events",
        "healthz",
        "readyz",
        "metrics",
    } <= set(ids)


def test_every_error_response_is_a_problem_document(document: dict[str, Any]) -> None:
    components = document["components"]
    problem = components["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "errors", "current_version"} <= set(
        problem["properties"]
    )
    for path, method, op in _operations(document):
        for status, response in op["responses"].items():
            if "$ref" in response:
                response = components["responses"][response["$ref"].rsplit("/", 1)[-1]]
            headers = response.get("headers", {})
            assert headers.get("X-Request-ID", {}).get("required") is True, (method, path, status)
            if int(status) >= 400 and path != "/readyz":
                content = response.get("content", {})
                assert list(content) == [PROBLEM], (method, path, status)
                assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, (
                    method,
                    path,
                    status,
                )


def test_every_operation_documents_the_statuses_it_can_answer(document: dict[str, Any]) -> None:
    for path, _method, op in _operations(document):
        statuses = set(op["responses"])
        name = op["operationId"]
        if path.startswith("/v1/"):
            assert {"401", "422", "503"} <= statuses, (name, statuses)
            assert op["security"] == [{"bearerAuth": []}], name
        if name in COMMANDS:
            assert {"202", "403", "409", "413", "415"} <= statuses, (name, statuses)
            assert "Idempotency-Key" in {p["name"] for p in op["parameters"]}, name
            success = "201" if name in ("create_profile", "add_vehicle") else "200"
            headers = op["responses"][success]["headers"]
            assert {"ETag", "X-Position", "Idempotent-Replayed"} <= set(headers), (name, headers)
            assert op["responses"]["202"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Accepted"
            }
        if name in IF_MATCH:
            assert "412" in statuses, name
            assert "If-Match" in {p["name"] for p in op["parameters"]}, name
        if name in ("get_profile", "get_default", "rename_profile"):
            assert op["responses"]["200"]["headers"]["ETag"]["required"] is True, name
        assert "X-Request-ID" in {p["name"] for p in op.get("parameters", [])}, name
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}


def test_non_json_bodies_are_documented_with_their_media_types(document: dict[str, Any]) -> None:
    export = document["paths"]["/v1/audit/events"]["get"]["responses"]["200"]["content"]
    assert list(export) == ["application/x-ndjson"]
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert [m.split(";")[0] for m in metrics] == ["text/plain"]
    create = document["paths"]["/v1/profiles"]["post"]["responses"]["201"]["headers"]
    assert create["Location"]["required"] is True


def test_every_problem_type_is_listed_with_its_status(document: dict[str, Any]) -> None:
    from api.problems import KINDS

    description = document["info"]["description"]
    for kind, known in KINDS.items():
        assert f"| `https://racer-profiles.dev/problems/{kind}` | {known.status} |" in description, kind
    for kind in (
        "not-found",
        "method-not-allowed",
        "content-too-large",
        "unsupported-media-type",
        "validation",
    ):
        assert kind in KINDS
