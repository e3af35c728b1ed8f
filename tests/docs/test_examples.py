"""Every example in the READMEs and docs/ runs as written on the `make run`
setup: a real `racer-profiles serve` on its own embedded PostgreSQL (no
DATABASE_URL), and each Markdown file's examples run in order in one bash
session, as a reader would paste them into a terminal next to `make run`.

What runs, picked up by itself when someone adds a block:
- fenced blocks in sh, bash, shell and console (its `$ ` lines) and python
  (fed to the virtualenv's Python); the session exports every variable it sets
  (`set -a`), so a Python example reads e.g. RACER_PROFILES_TOKEN;
- json, http, text, js, mermaid ... blocks are answers, browser code and
  diagrams, not commands.
A block that cannot run here says so in its info string, with the reason:
```` ```sh not-run: a server that runs until stopped ````. NOT_RUN_MAX keeps
that set small; the test lists it on failure.

The one rewrite: `localhost:8000` and `127.0.0.1:8000` become the test
server's port (8000 may be taken by a real `make run`). The session runs in a
scratch directory that links the checkout's files, so the files examples
write (exports, dumps) land there; `set -e` stops a session at the first
failing command, and a failing `grep` of an answer counts as a failure."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import postgres_of, until
from tests.support.service import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix) if sys.prefix != sys.base_prefix else ROOT / ".venv"  # the tests' virtualenv
CLI = Path(sys.executable).with_name("racer-profiles")
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    ROOT / "clients" / "python" / "README.md",
]
SHELL = {"sh", "bash", "shell", "console"}
RUNNABLE = SHELL | {"python", "py"}
NOT_RUN = "not-run"
NOT_RUN_MAX = 12  # every one is a reader's example nobody checks: keep them few
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
SESSION_TIMEOUT = 600  # seconds for one file's examples on a loaded 2-core machine


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    info: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def not_run_reason(self) -> str | None:
        words = self.info.split(None, 1)
        rest = words[1] if len(words) > 1 else ""
        if not rest.startswith(NOT_RUN):
            return None
        return rest[len(NOT_RUN) :].lstrip(":").strip()


def blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and set(lines[j].strip()) == {fence[0]}
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        yield Block(path, i + 1, (info.split() or [""])[0].lower(), info, "\n".join(body) + "\n")
        i = j + 1


def console_commands(text: str) -> str:
    """The commands of a console block: its `$ ` lines and their continuations."""
    commands, continuing = [], False
    for line in text.splitlines():
        if line.startswith("$ ") or continuing:
            command = line[2:] if line.startswith("$ ") and not continuing else line
            commands.append(command)
            continuing = command.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


def with_port(text: str, port: int) -> str:
    return re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", rf"\g<1>:{port}", text)


def session(path: Path, port: int) -> str:
    parts = ["set -ea"]
    for block in blocks(path):
        if block.language not in RUNNABLE or block.not_run_reason is not None:
            continue
        parts.append(f"echo '>>> example at {block.where}'")
        text = with_port(block.text, port)
        if block.language == "console":
            parts.append(console_commands(text))
        elif block.language in SHELL:
            parts.append(text)
        else:
            parts.append(f"\"{VENV / 'bin' / 'python'}\" - <<'__DOCS_PYTHON__'\n{text}__DOCS_PYTHON__")
    return "\n".join(parts) + "\n"


def test_every_block_that_does_not_run_says_why_and_they_stay_few() -> None:
    skipped = [b for path in DOCUMENTS for b in blocks(path) if b.not_run_reason is not None]
    assert all(b.not_run_reason for b in skipped), [b.where for b in skipped if not b.not_run_reason]
    listing = "\n".join(f"{b.where}: {b.not_run_reason}" for b in skipped)
    assert len(skipped) <= NOT_RUN_MAX, f"{len(skipped)} examples are not run:\n{listing}"


def test_fences_are_parsed_as_a_reader_sees_them() -> None:
    # The parser is the docs test's only guess about the files: check it on a sample.
    sample = ROOT / "tests" / "docs" / "sample.md"
    found = list(blocks(sample))
    assert [(b.language, b.not_run_reason) for b in found] == [
        ("sh", None),
        ("json", None),
        ("sh", "a server that runs until stopped"),
        ("console", None),
    ]
    assert found[0].text == "echo one\necho two\n"  # the list's indentation removed
    assert console_commands(found[3].text) == "racer-profiles db-url \\\n  --dbname x\necho hi\n"
    assert with_port("curl localhost:8000/a http://127.0.0.1:8000 x:80001", 9) == (
        "curl localhost:9/a http://127.0.0.1:9 x:80001"
    )


def _env(data_dir: Path) -> dict[str, str]:
    from infrastructure.settings import Settings

    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["EMBEDDED_DATA_DIR"] = str(data_dir)
    # As the README's CORS section starts the server.
    env["CORS_ORIGINS"] = '["https://dash.example"]'
    return env


@dataclass(frozen=True)
class Served:
    """`make run`'s setup in a scratch copy of the checkout: the serve process, its
    port, log and embedded server's data directory, the directory and the environment."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    data_dir: Path
    work: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("docs")
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".venv", ".data"}:
            (work / entry.name).symlink_to(entry)
    (work / ".venv").symlink_to(VENV)
    data_dir = work / ".data" / "postgres"
    env = _env(data_dir)
    port = free_port()
    log = work / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [str(CLI), "serve", "--port", str(port)],
            env=env,
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = until(lambda: "serving" in log.read_text() or serve.poll() is not None, 60)
        assert started and serve.poll() is None, log.read_text()[-3000:]
        yield Served(serve, port, log, data_dir, work, env)
    finally:
        # Stopped here only when the last test (which checks the stop) did not run or failed.
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
            try:
                serve.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
                serve.wait(10)
        for process in postgres_of(data_dir):
            process.kill()


@pytest.mark.postgres  # its own embedded server, as `make run` starts one
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_examples_run_as_written(path: Path, served: Served) -> None:
    script = session(path, served.port)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=served.work,
        env=served.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=SESSION_TIMEOUT,
        check=False,
    )
    ran = re.findall(r"^>>> example at (.+)$", result.stdout, re.M)
    assert result.returncode == 0, (
        f"the example at {ran[-1] if ran else path} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
    )
    assert "Traceback" not in result.stdout, result.stdout[-4000:]


@pytest.mark.postgres
def test_the_server_stops_cleanly_after_the_examples(served: Served) -> None:
    """Last in the module, after every example ran against it: SIGTERM (as `make stop`
    sends) ends the serve with exit 0 and no traceback, and its embedded PostgreSQL with it."""
    os.killpg(served.process.pid, signal.SIGTERM)
    code = served.process.wait(60)
    text = served.log.read_text(errors="replace")
    assert code == 0 and "Traceback" not in text, text[-3000:]
    assert until(lambda: not postgres_of(served.data_dir), 10)
