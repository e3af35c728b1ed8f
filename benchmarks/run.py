#!/usr/bin/env python3
"""The racer-profiles benchmark: one command, about 7 minutes (--quick: about 2).

    python benchmarks/run.py --out results.json [--quick] [--rounds N]

It creates its own database on the PostgreSQL server (--database-url, default
postgresql://postgres@127.0.0.1:5432/postgres), seeds it in-process through
the project's code, starts the service as a user would (`racer-profiles
serve`, `racer-profiles rebuild`), loads it with wrk, prints one table (each
figure's median over its rounds, min..max, its ratio to its baseline and the
target) and writes the same as JSON to --out and to
benchmarks/results/<UTC timestamp>.json. The database is dropped at the end.

See benchmarks/README.md for what each figure measures and how.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = ROOT / ".venv"

# The project (and psycopg) live in the repository's virtualenv: use it.
if (VENV / "bin" / "python").exists() and Path(sys.prefix).resolve() != VENV.resolve():
    os.execv(
        str(VENV / "bin" / "python"),
        [str(VENV / "bin" / "python"), str(Path(__file__).resolve()), *sys.argv[1:]],
    )

sys.path[:0] = [str(ROOT), str(HERE)]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
from harness import loadgen, procs, report  # noqa: E402
from harness.lag import CommitClock, percentile  # noqa: E402
from harness.report import Figure, Figures  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
CRUD_SCHEMA = "crud"  # the CRUD baseline's tables, beside the service's in database x
RACER = ROOT / ".venv" / "bin" / "racer-profiles"
PYTHON = ROOT / ".venv" / "bin" / "python"


@dataclass
class Config:
    rounds: int
    duration: int  # seconds per measured round of a load
    warmup: int  # seconds of unrecorded load before a series of rounds
    connections: int
    query_accounts: int  # stage 1: accounts in the read table (all queried)
    large_accounts: int  # stage 2: accounts in the read table
    command_accounts: int
    long_events: int  # events of the long-history account
    sequential_commands: int  # per account and round, long vs fresh
    budget: float  # seconds; extra rebuild rounds only while they fit
    quick: bool
    only: str | None = None  # "crud": the CRUD comparison alone


def parse_args() -> tuple[argparse.Namespace, Config]:
    p = argparse.ArgumentParser(
        description="Benchmark racer-profiles against its baselines (see benchmarks/README.md).",
    )
    p.add_argument("--out", required=True, type=Path, help="where to write the JSON results")
    p.add_argument("--quick", action="store_true", help="a ~2 minute smoke run with smaller sizes")
    p.add_argument("--rounds", type=int, help="measured rounds per figure (default 3; quick 2)")
    p.add_argument("--duration", type=int, help="seconds per round of HTTP or SQL load (default 5; quick 2)")
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER),
        help="PostgreSQL server to create the benchmark's database on (its dbname is only "
        "used to connect; default %(default)s)",
    )
    p.add_argument("--accounts", type=int, help="accounts of the large stage (default 100000; quick 10000)")
    p.add_argument(
        "--budget",
        type=float,
        default=570.0,
        help="seconds the whole run should stay under; extra rebuild rounds are skipped "
        "beyond it (default %(default)s)",
    )
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service (repeatable), e.g. API_THREADS=8",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the machine to be quiet (other processes under 15%% "
        "of the CPU); the run is measured either way and the background load is reported",
    )
    p.add_argument(
        "--only",
        choices=["crud"],
        help="run one comparison alone: crud = the service against the CRUD baseline on its four "
        "figures (about 3 minutes; with --quick about 1)",
    )
    p.add_argument(
        "--long-events",
        type=int,
        help="events of the long-history account (default 10000; quick 3000)",
    )
    p.add_argument(
        "--py-spy",
        action="store_true",
        help="profile the service (py-spy, `pip install -e '.[bench]'`) during the first measured "
        "round of each CRUD-comparison figure; collapsed stacks go to benchmarks/results/",
    )
    p.add_argument("--keep-db", action="store_true", help="do not drop the benchmark database")
    p.add_argument("--keep-logs", action="store_true", help="keep the service logs (always kept on failure)")
    a = p.parse_args()
    quick = a.quick
    cfg = Config(
        rounds=a.rounds or (2 if quick else 3),
        duration=a.duration or (2 if quick else 5),
        warmup=1 if quick else 2,
        connections=16,
        query_accounts=1000,
        large_accounts=a.accounts or (10_000 if quick else 100_000),
        command_accounts=1000,
        long_events=a.long_events or (3_000 if quick else 10_000),
        sequential_commands=20 if quick else 100,
        budget=a.budget if not quick else min(a.budget, 170.0),
        quick=quick,
        only=a.only,
    )
    if cfg.rounds < 1 or cfg.duration < 1:
        p.error("--rounds and --duration must be at least 1")
    return a, cfg


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# Figures compared with the same figure of the previous run of the same kind
# (benchmarks/results/): what a change of the service (encryption, say) cost.
COMPARED_WITH_PREVIOUS = ("C1", "C2", "R1", "R5")


def previous_run(results: Path, suffix: str, before: str) -> tuple[Path, dict[str, Any]] | None:
    """The latest result file of the same kind (quick, full, --only) before this run."""
    kind = re.compile(rf"^\d{{8}}T\d{{6}}Z{re.escape(suffix)}\.json$")
    earlier = sorted(p for p in results.glob("*.json") if kind.match(p.name) and p.stem < before)
    if not earlier:
        return None
    doc = json.loads(earlier[-1].read_text())
    return earlier[-1], {row["key"]: row for row in doc.get("figures", [])}


class Bench:
    def __init__(self, args: argparse.Namespace, cfg: Config) -> None:
        self.args = args
        self.cfg = cfg
        self.t0 = time.monotonic()
        self.figures = Figures()
        self.notes: list[str] = []
        self.loadgen: list[dict[str, Any]] = []  # every wrk/pgbench run's CPU report
        self.raw: dict[str, Any] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="rp-bench-"))
        server = conninfo_to_dict(args.database_url)
        self.server = server
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.stamp = stamp
        base = f"rp_bench_{stamp.lower()}_{os.getpid()}"
        # Two databases: "q" holds the query stages (1,000 then 100,000
        # accounts) and the large rebuild; "c" the command loads, the long
        # history and the fresh accounts, so neither stage's data skews the other.
        # "x": the comparison with the CRUD baseline (the service and, in a
        # schema of its own, the CRUD service, on the same data).
        self.dbnames = {"q": f"{base}_q", "c": f"{base}_c", "x": f"{base}_x"}
        if cfg.only == "crud":
            self.dbnames = {"x": self.dbnames["x"]}
        procs.BENCH_DATABASES.update(self.dbnames.values())
        self.dbs = {k: {**server, "dbname": name} for k, name in self.dbnames.items()}
        self.urls = {k: make_conninfo(**db) for k, db in self.dbs.items()}
        self.service: procs.Started | None = None
        self.started: list[procs.Started] = []
        self.containers: dict[str, Any] = {}
        self.wrk_bin = loadgen.find_tool("wrk", "/usr/bin/wrk")
        self.pgbench_bin = loadgen.find_tool("pgbench", "/usr/bin/pgbench")
        self.failed = False

    # --- plumbing ---------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def service_env(self, db: str = "q") -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = self.urls[db]
        env.pop("TEST_DATABASE_URL", None)
        for item in self.args.service_env:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def start_service(self, label: str, db: str, workers: int = 1) -> procs.Started:
        port = procs.free_port()
        argv = [str(RACER), "serve", "--host", "127.0.0.1", "--port", str(port)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        svc = procs.Started(
            f"service ({label})",
            argv,
            self.service_env(db),
            port,
            self.workdir / f"service-{label}.log",
            ROOT,
        )

        def caught_up(body: bytes) -> bool:
            try:
                data = json.loads(body)
            except ValueError:
                return False
            return data.get("lag", 0) == 0

        t = time.monotonic()
        svc.start("/readyz", ready_check=caught_up)
        self.raw.setdefault("service_start_s", {})[label] = round(time.monotonic() - t, 3)
        self.started.append(svc)
        self.service = svc
        return svc

    def stop(self, svc: procs.Started | None) -> None:
        if svc is not None:
            svc.stop()
            if svc in self.started:
                self.started.remove(svc)
        if svc is self.service:
            self.service = None

    def services_cpu(self) -> dict[str, list[int]]:
        return {"service": self.service.pids()} if self.service else {}

    def record_cpu(self, what: str, tool: str, cpu: dict[str, Any]) -> None:
        self.loadgen.append({"measurement": what, "tool": tool, **cpu})

    def wrk(
        self,
        what: str,
        port: int,
        method: str,
        path: str,
        *,
        connections: int | None = None,
        duration: int | None = None,
        tokens: Path | None = None,
        body: Path | None = None,
        services: dict[str, list[int]] | None = None,
        record: bool = True,
    ) -> loadgen.WrkResult:
        assert self.wrk_bin
        res = loadgen.wrk(
            self.wrk_bin,
            port,
            method,
            path,
            connections=connections or self.cfg.connections,
            duration_s=duration or self.cfg.duration,
            tokens_file=tokens,
            body_file=body,
            services=services if services is not None else self.services_cpu(),
        )
        if record:
            self.record_cpu(what, "wrk", res.cpu)
        return res

    def against_previous_run(self, results: Path) -> None:
        suffix = ("-quick" if self.cfg.quick else "") + (f"-{self.cfg.only}" if self.cfg.only else "")
        found = previous_run(results, suffix, self.stamp)
        if found is None:
            self.notes.append("no previous run of this kind in benchmarks/results to compare with")
            return
        path, rows = found
        for key in COMPARED_WITH_PREVIOUS:
            now, then = self.figures.get(key), rows.get(key)
            if now is None or now.value is None or not then or then.get("value") is None:
                continue
            self.figures.add(
                Figure(
                    f"{key}-before",
                    f"{key} in the previous run ({path.name})",
                    now.unit,
                    [float(then["value"])],
                    group="against the previous run",
                )
            )
            self.figures.add(
                Figure(
                    f"{key}-now",
                    f"{key} in this run: {now.label}",
                    now.unit,
                    list(now.rounds),
                    baseline=f"{key}-before",
                    group="against the previous run",
                )
            )

    def write_lines(self, name: str, lines: list[str]) -> Path:
        path = self.workdir / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def sql(self, db: str, query: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(**self.dbs[db], autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    # --- the run ------------------------------------------------------------

    def run(self) -> None:
        log(
            f"databases {', '.join(self.dbnames.values())} on {self.server.get('host', '')}:"
            f"{self.server.get('port', 5432)}; work dir {self.workdir}"
        )
        with psycopg.connect(**self.server, autocommit=True) as conn:
            for name in self.dbnames.values():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.machine = self.machine_info()
        self.preflight()
        if self.cfg.only == "crud":
            self.stage("against the CRUD baseline", self.stage_crud)
            return
        done: dict[str, bool] = {}
        for name, fn, needs in (
            ("baselines", self.baselines, ()),
            ("stage 1 (queries, 1,000 accounts)", self.stage_small, ()),
            ("commands", self.stage_commands, ()),
            ("against the CRUD baseline", self.stage_crud, ()),
            (
                "stage 2 (rebuild, queries, 100,000 accounts)",
                self.stage_large,
                ("stage 1 (queries, 1,000 accounts)",),
            ),
        ):
            if not all(done.get(n) for n in needs):
                self.notes.append(f"{name}: skipped because {', '.join(needs)} failed")
                continue
            done[name] = self.stage(name, fn)
        self.memory_figures()

    def stage(self, name: str, fn: Any) -> bool:
        """Runs one stage; a failure is reported and the next stages still run."""
        try:
            fn()
            return True
        except Exception as e:
            self.failed = True
            self.notes.append(f"{name} failed: {e!r}"[:600])
            log(f"{name} FAILED: {e!r}")
            traceback.print_exc()
            for svc in list(self.started):
                print(f"--- {svc.name} log tail ---\n{svc.log_tail()}", file=sys.stderr)
                self.stop(svc)
            return False

    def preflight(self) -> None:
        """Other processes on the 2 cores perturb every figure: wait if asked,
        and say so."""
        deadline = time.monotonic() + self.args.wait_idle
        share = procs.busy_share(1.0)
        while share > 0.15 and time.monotonic() < deadline:
            log(f"machine busy ({share:.0%} of the CPU used by other processes); waiting")
            share = procs.busy_share(5.0)
        self.raw["busy_share_before_start"] = round(share, 3)
        if share > 0.15:
            note = (
                f"the machine was busy before the start ({share:.0%} of its CPU used by other processes): "
                "every figure is perturbed; see the background rows and each run's background_cores"
            )
            self.notes.append(note)
            log(note)

    def machine_info(self) -> dict[str, Any]:
        cpu_model = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        mem_kb = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        settings = {}
        with psycopg.connect(**next(iter(self.dbs.values())), autocommit=True) as conn:
            version = conn.execute("SELECT version()").fetchone()[0]
            for name in (
                "shared_buffers",
                "synchronous_commit",
                "fsync",
                "max_connections",
                "wal_sync_method",
            ):
                settings[name] = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
        git = {}
        try:
            git["commit"] = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
            git["dirty_files"] = len(
                subprocess.run(
                    ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
                ).stdout.splitlines()
            )
        except OSError:
            pass
        return {
            "nproc": procs.NCPU,
            "cpu_model": cpu_model,
            "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "postgresql": version,
            "postgresql_settings": settings,
            "wrk": loadgen.tool_version([self.wrk_bin or "wrk", "-v"]),
            "pgbench": loadgen.tool_version([self.pgbench_bin or "pgbench", "--version"]),
            "service_git": git,
        }

    # --- baselines ------------------------------------------------------------

    def baselines(self) -> None:
        cfg = self.cfg
        log("baselines: PostgreSQL inserts (pgbench)")
        self.sql("q", (loadgen.PGBENCH_DIR / "setup.sql").read_text())
        assert self.pgbench_bin
        for key, label, script, clients in (
            ("B2", "PostgreSQL single-row INSERT, 1 connection", "insert.sql", 1),
            ("B3", "PostgreSQL LOCK EXCLUSIVE + NOTIFY + INSERT, 8 connections", "lock_notify.sql", 8),
        ):
            loadgen.pgbench(self.pgbench_bin, self.dbs["q"], script, clients=clients, duration_s=cfg.warmup)
            runs = []
            for _ in range(cfg.rounds):
                r = loadgen.pgbench(
                    self.pgbench_bin, self.dbs["q"], script, clients=clients, duration_s=cfg.duration
                )
                self.record_cpu(key, "pgbench", r["cpu"])
                runs.append(r)
            self.figures.add(
                Figure(
                    key,
                    label,
                    "tx/s",
                    [r["tps"] for r in runs],
                    group="baselines",
                    detail={
                        "latency_avg_ms": [r["latency_avg_ms"] for r in runs],
                        "failed": sum(r["failed"] for r in runs),
                        "pgbench_cores": [r["cpu"]["loadgen_cores"] for r in runs],
                    },
                )
            )
        self.sql("q", "DROP TABLE bench_baseline_events")

        log("baselines: FastAPI hello-world (same server stack, 1 worker)")
        port = procs.free_port()
        hello = procs.Started(
            "hello-world",
            [str(PYTHON), str(HERE / "hello_app.py"), "--port", str(port)],
            self.service_env(),
            port,
            self.workdir / "hello.log",
            HERE,
        )
        hello.start("/healthz")
        self.started.append(hello)
        try:
            services = {"service": hello.pids()}
            self.hello_figure(
                "B1",
                "FastAPI hello-world GET, 16 connections",
                port,
                "/hello",
                services,
                extra_detail={"rss_mb": round(hello.rss_mb(), 1)},
            )
            # The service's hot queries are async endpoints: the same hello-world
            # on the event loop is the stricter baseline for them (Q*-vs-B1a).
            self.hello_figure(
                "B1a",
                "FastAPI hello-world GET, async endpoint, 16 connections",
                port,
                "/hello-async",
                services,
                baseline="B1",
            )
        finally:
            self.stop(hello)
        if self.workers_supported():
            # What two processes can gain at all on this machine (context for W2).
            log("baselines: FastAPI hello-world, 2 workers")
            port = procs.free_port()
            hello = procs.Started(
                "hello-world x2",
                [str(PYTHON), str(HERE / "hello_app.py"), "--port", str(port), "--workers", "2"],
                self.service_env(),
                port,
                self.workdir / "hello2.log",
                HERE,
            )
            hello.start("/healthz")
            self.started.append(hello)
            try:
                time.sleep(1.0)  # both workers up
                self.hello_figure(
                    "B1w2",
                    "FastAPI hello-world GET, 2 workers, 16 connections",
                    port,
                    "/hello",
                    {"service": hello.pids()},
                    baseline="B1",
                )
            finally:
                self.stop(hello)

    def hello_figure(
        self,
        key: str,
        label: str,
        port: int,
        path: str,
        services: dict[str, list[int]],
        baseline: str | None = None,
        extra_detail: dict[str, Any] | None = None,
    ) -> None:
        """A warm-up, then the rounds of wrk on a hello-world endpoint, as one figure."""
        self.wrk(key, port, "GET", path, duration=self.cfg.warmup, services=services, record=False)
        runs = [self.wrk(key, port, "GET", path, services=services) for _ in range(self.cfg.rounds)]
        self.figures.add(
            Figure(
                key,
                label,
                "req/s",
                [r.rps for r in runs],
                baseline=baseline,
                group="baselines",
                detail={"rounds": [r.as_dict() for r in runs], **(extra_detail or {})},
                error=_problems(label, runs),
            )
        )

    # --- stage 1: 1,000 accounts: queries and a small rebuild ---------------------

    def stage_small(self) -> None:
        from harness import seed

        from infrastructure.container import build
        from infrastructure.settings import Settings

        cfg = self.cfg
        log(f"stage 1: seeding {cfg.query_accounts:,} accounts (2 profiles each) through the domain")
        self.containers["q"] = container = build(Settings(database_url=self.urls["q"], api_threads=1))
        app = container.app
        accounts, secs = seed.timed(lambda: seed.create_accounts(container, cfg.query_accounts, "query"))
        events, secs2 = seed.timed(lambda: seed.seed_profiles(app, accounts, 2))
        self.query_accounts = accounts
        self.raw["seed_stage1"] = {
            "accounts": len(accounts),
            "events": events,
            "seconds": round(secs + secs2, 2),
        }
        self.query_tokens = self.write_lines("query-tokens.txt", [a.token for a in accounts])

        log("stage 1: rebuild (racer-profiles rebuild)")
        self.raw["rebuild_stage1"] = self.rebuild("q")

        svc = self.start_service("stage1", "q")
        time.sleep(1.0)
        self.rss_idle = svc.own_rss_mb()
        n = self.read_table_accounts("q")
        self.raw["stage1_accounts_in_read_table"] = n
        self.query_series("1", n)
        self.raw["rss_after_queries_stage1_mb"] = round(svc.rss_mb(), 1)
        self.stop(svc)

    def read_table_accounts(self, db: str) -> int:
        from infrastructure.profiles_sql import TABLE

        return int(
            self.sql(db, sql.SQL("SELECT count(DISTINCT account_id) FROM {}").format(sql.Identifier(TABLE)))[
                0
            ][0]
        )

    def query_series(self, stage: str, accounts: int) -> None:
        cfg = self.cfg
        assert self.service is not None
        port = self.service.port
        for name, path in (("default", "/v1/profiles/default"), ("list", "/v1/profiles")):
            log(f"stage {stage}: GET {path} ({accounts:,} accounts in the read table)")
            self.wrk(
                f"Q{stage}", port, "GET", path, duration=cfg.warmup, tokens=self.query_tokens, record=False
            )
            runs = [
                self.wrk(f"Q{stage}-{name}", port, "GET", path, tokens=self.query_tokens)
                for _ in range(cfg.rounds)
            ]
            err = _problems(f"GET {path}", runs)
            k = f"Q{stage}{'d' if name == 'default' else 'l'}"
            detail = {
                "rounds": [r.as_dict() for r in runs],
                "accounts_in_read_table": accounts,
                "accounts_queried": len(self.query_accounts),
            }
            self.figures.add(
                Figure(
                    f"{k}-rps",
                    f"GET {path} with {accounts:,} accounts, 16 connections",
                    "req/s",
                    [r.rps for r in runs],
                    baseline="B1",
                    target=">= 0.65x",
                    check=lambda v, r: r is not None and r >= 0.65,
                    group="queries",
                    detail=detail,
                    error=err,
                )
            )
            self.figures.add(
                Figure(
                    f"{k}-vs-B1a",
                    "  the same against the async hello-world",
                    "req/s",
                    [r.rps for r in runs],
                    baseline="B1a",
                    group="queries",
                    error=err,
                )
            )
            p50 = self.figures.add(
                Figure(
                    f"{k}-p50",
                    f"  p50 latency ({accounts:,} accounts)",
                    "ms",
                    [r.p50_ms for r in runs],
                    group="queries",
                )
            )
            p99 = self.figures.add(
                Figure(
                    f"{k}-p99",
                    f"  p99 latency ({accounts:,} accounts)",
                    "ms",
                    [r.p99_ms for r in runs],
                    group="queries",
                )
            )
            if stage == "2":
                small = f"Q1{'d' if name == 'default' else 'l'}"
                p50.baseline, p50.target = f"{small}-p50", "<= 1.2x"
                p50.check = lambda v, r: r is not None and r <= 1.2
                p99.baseline = f"{small}-p99"

    def rebuild(self, db: str) -> dict[str, Any]:
        out = self.workdir / "rebuild.log"
        out.unlink(missing_ok=True)
        with out.open("ab") as f:
            t = time.monotonic()
            proc = subprocess.Popen(
                [str(RACER), "rebuild"],
                env=self.service_env(db),
                cwd=ROOT,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - t
        text = out.read_text(errors="replace")
        counts = re.findall(r"rebuilt \S+ from (\d+) events", text)
        if proc.returncode != 0 or not counts:
            raise RuntimeError(f"racer-profiles rebuild failed ({proc.returncode}):\n{text[-2000:]}")
        events = int(counts[-1])
        result = {
            "events": events,
            "wall_s": round(wall, 3),
            "events_per_s": round(events / wall, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        }
        log(
            f"  rebuild: {events:,} events in {wall:.1f}s = {events / wall:,.0f} events/s, "
            f"peak RSS {result['peak_rss_mb']} MB"
        )
        return result

    # --- stage 1b: commands --------------------------------------------------------

    def stage_commands(self) -> None:
        from harness import seed

        from infrastructure.container import build
        from infrastructure.settings import Settings

        cfg = self.cfg
        self.containers["c"] = container = build(Settings(database_url=self.urls["c"], api_threads=1))
        app = container.app
        log(
            f"commands: seeding {cfg.command_accounts:,} command accounts, a shared one, "
            f"a {cfg.long_events:,}-event one and fresh ones"
        )
        cmd_accounts = seed.create_accounts(container, cfg.command_accounts, "command")
        seed.seed_profiles(app, cmd_accounts, 1)
        shared = seed.create_accounts(container, 1, "shared")
        seed.seed_profiles(app, shared, 1)
        long = seed.create_accounts(container, 1, "long history")
        seed.seed_profiles(app, long, 2)
        (long_events, secs) = seed.timed(lambda: seed.seed_long_history(app, long[0], cfg.long_events))
        self.raw["long_account"] = {"events": long_events, "seed_s": round(secs, 2)}
        fresh = seed.create_accounts(container, cfg.rounds + 1, "fresh")
        seed.seed_profiles(app, fresh, 2)
        log("commands: rebuild (to start the service caught up)")
        before = self.rebuild("c")
        self.raw["rebuild_before_commands"] = before
        self.figures.add(
            Figure(
                "R5",
                f"rebuild events/s, command store ({before['events']:,} events, one "
                f"{long_events:,}-event account)",
                "ev/s",
                [before["events_per_s"]],
                baseline="B2",
                group="rebuild",
                detail=before,
            )
        )

        svc = self.start_service("commands", "c")
        port = svc.port
        body = self.workdir / "create.json"
        body.write_text(
            json.dumps({"name": "Bench racer", "vehicles": [{"name": "Rotax Max", "race_number": "07"}]})
        )
        cmd_tokens = self.write_lines("command-tokens.txt", [a.token for a in cmd_accounts])
        shared_tokens = self.write_lines("shared-token.txt", [shared[0].token])

        clock = self.commit_clock()
        clock.install()
        try:
            log("commands: POST /v1/profiles, 16 connections, distinct accounts (+ read-your-writes lag)")
            self.wrk(
                "C1",
                port,
                "POST",
                "/v1/profiles",
                duration=cfg.warmup,
                tokens=cmd_tokens,
                body=body,
                record=False,
            )
            self.wait_caught_up("c")
            runs, lags = [], []
            for _ in range(cfg.rounds):
                before = self.metrics(port)
                clock.start()
                try:
                    r = self.wrk("C1", port, "POST", "/v1/profiles", tokens=cmd_tokens, body=body)
                    self.wait_caught_up("c")
                    time.sleep(0.2)
                finally:
                    clock.stop()
                lag = clock.analyse()
                r.cpu["retried"] = _delta(before, self.metrics(port), "conflict_retried")
                runs.append(r)
                lags.append(lag)
                log(
                    f"  {r.rps:.1f} commands/s, statuses {r.statuses}, lag p50 {_ms(lag.get('p50_ms'))} "
                    f"p99 {_ms(lag.get('p99_ms'))} over {lag.get('commands', 0)} commands"
                    + (f" ({lag['error']})" if "error" in lag else "")
                )
            detail = {"rounds": [r.as_dict() for r in runs], "accounts": len(cmd_accounts)}
            self.figures.add(
                Figure(
                    "C1",
                    "create-profile commands/s, 16 connections, distinct accounts",
                    "cmd/s",
                    [r.rps for r in runs],
                    baseline="B3",
                    target=">= 0.30x",
                    check=lambda v, r: r is not None and r >= 0.30,
                    group="commands",
                    detail=detail,
                )
            )
            self.figures.add(
                Figure("C1-p50", "  p50 command latency", "ms", [r.p50_ms for r in runs], group="commands")
            )
            self.figures.add(
                Figure("C1-p99", "  p99 command latency", "ms", [r.p99_ms for r in runs], group="commands")
            )
            self.figures.add(
                Figure(
                    "C1-non2xx",
                    "  share of responses not 2xx",
                    "%",
                    [100 * r.non_2xx() / max(r.requests, 1) for r in runs],
                    group="commands",
                    detail={"statuses": [r.statuses for r in runs]},
                )
            )
            good = [lg for lg in lags if "error" not in lg and lg.get("p50_ms") is not None]
            lag_detail = {
                "method": "LISTEN: commit NOTIFY of the event transaction vs tracking trigger NOTIFY"
                " (see benchmarks/harness/lag.py)",
                "rounds": [{k: v for k, v in lg.items() if k != "lag_ms"} for lg in lags],
            }
            err = None if good else "; ".join(lg.get("error", "no commands") for lg in lags)
            self.figures.add(
                Figure(
                    "L1-p50",
                    "read-your-writes lag p50 under the command load",
                    "ms",
                    [lg["p50_ms"] for lg in good],
                    group="commands",
                    detail=lag_detail,
                    error=err,
                )
            )
            self.figures.add(
                Figure(
                    "L1-p99",
                    "read-your-writes lag p99 under the command load",
                    "ms",
                    [lg["p99_ms"] for lg in good],
                    target="<= 15 ms",
                    check=lambda v, r: v <= 15.0,
                    group="commands",
                    error=err,
                )
            )
            self.figures.add(
                Figure(
                    "L1-row",
                    "  row-visible lag p99 (last row-changing event)",
                    "ms",
                    [lg["row_visible_p99_ms"] for lg in good if lg.get("row_visible_p99_ms") is not None],
                    group="commands",
                )
            )

            log("commands: POST /v1/profiles, 16 connections, one shared account")
            self.wrk(
                "C2",
                port,
                "POST",
                "/v1/profiles",
                duration=cfg.warmup,
                tokens=shared_tokens,
                body=body,
                record=False,
            )
            self.wait_caught_up("c")
            runs = []
            for _ in range(cfg.rounds):
                before = self.metrics(port)
                r = self.wrk("C2", port, "POST", "/v1/profiles", tokens=shared_tokens, body=body)
                r.cpu["retried"] = _delta(before, self.metrics(port), "conflict_retried")
                r.cpu["conflict_failed"] = _delta(before, self.metrics(port), "conflict_failed")
                runs.append(r)
                log(f"  {r.rps:.1f} commands/s, statuses {r.statuses}, retried {r.cpu['retried']}")
                self.wait_caught_up("c")
            self.figures.add(
                Figure(
                    "C2",
                    "create-profile commands/s, 16 connections, one shared account",
                    "cmd/s",
                    [r.rps for r in runs],
                    baseline="B3",
                    group="commands",
                    detail={"rounds": [r.as_dict() for r in runs]},
                )
            )
            self.figures.add(
                Figure(
                    "C2-409",
                    "  share of shared-account commands ending in 409",
                    "%",
                    [100 * r.count(409) / max(r.requests, 1) for r in runs],
                    target="= 0%",
                    check=lambda v, r: v == 0,
                    group="commands",
                )
            )
            self.figures.add(
                Figure(
                    "C2-retried",
                    "  share of shared-account commands retried (metrics)",
                    "%",
                    [100 * (r.cpu.get("retried") or 0) / max(r.requests, 1) for r in runs],
                    group="commands",
                )
            )
        finally:
            clock.uninstall()

        log(
            f"commands: PUT /v1/profiles/default, {cfg.long_events:,}-event account vs fresh ones, one at a time"
        )
        self.long_vs_fresh(port, long[0], fresh)
        log(f"commands: audit reads, {cfg.long_events:,}-event account vs fresh ones, one at a time")
        self.audit_long_vs_fresh(port, long[0], fresh)
        self.rss_after_commands = svc.own_rss_mb()
        self.rss_serve_total_after_commands = svc.rss_mb()
        self.stop(svc)

    def commit_clock(self) -> CommitClock:
        from infrastructure.profiles_view import CHANGES_CHANNEL, TRACKING_TABLE

        recorder = self.containers["c"].app.recorder
        return CommitClock(
            conninfo=self.dbs["c"],
            schema=recorder.datastore.schema,
            events_table=recorder.events_table_name,
            events_channel=recorder.channel_name,
            tracking_table=TRACKING_TABLE,
            changes_channel=CHANGES_CHANNEL,
        )

    def wait_caught_up(self, db: str, timeout: float = 120.0) -> None:
        """Until the read table's tracking position reaches the event log's head."""
        from infrastructure.profiles_view import TRACKING_TABLE

        recorder = self.containers[db].app.recorder
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            head = self.sql(
                db,
                sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
                    sql.Identifier(recorder.events_table_name)
                ),
            )[0][0]
            pos = self.sql(
                db,
                sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
                    sql.Identifier(TRACKING_TABLE)
                ),
            )[0][0]
            if pos >= head:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the read table did not catch up within {timeout}s")

    def metrics(self, port: int) -> dict[str, float]:
        try:
            status, _, body = procs.http_request(port, "GET", "/metrics", timeout=5)
        except OSError:
            return {}
        out: dict[str, float] = {}
        if status != 200:
            return out
        for line in body.decode().splitlines():
            m = re.match(r"commands_total\{([^}]*)\} ([0-9.e+]+)", line)
            if m and 'command="create_profile"' in m.group(1):
                outcome = re.search(r'outcome="([^"]+)"', m.group(1))
                if outcome:
                    out[outcome.group(1)] = out.get(outcome.group(1), 0.0) + float(m.group(2))
        return out

    def long_vs_fresh(self, port: int, long: Any, fresh: list[Any]) -> None:
        """Sequential PUT /v1/profiles/default (one connection each), toggling
        the default between the account's two profiles, alternating accounts."""
        import http.client

        cfg = self.cfg

        def runner(account: Any) -> Any:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            auth = {"Authorization": f"Bearer {account.token}"}
            status, _, payload = procs.http_request(
                port, "GET", "/v1/profiles/default", headers=auth, conn=conn
            )
            if status != 200:
                raise RuntimeError(f"GET default: {status} {payload[:200]!r}")
            current = json.loads(payload)["id"]
            state = {"target": next(str(p) for p in account.profiles[:2] if str(p) != current)}

            def once() -> float:
                t = time.perf_counter()
                status, _, payload = procs.http_request(
                    port,
                    "PUT",
                    "/v1/profiles/default",
                    headers=auth,
                    body={"profile_id": state["target"]},
                    conn=conn,
                )
                dt = (time.perf_counter() - t) * 1000
                if status != 200:
                    raise RuntimeError(f"PUT default: {status} {payload[:300]!r}")
                state["target"] = next(str(p) for p in account.profiles[:2] if str(p) != state["target"])
                return dt

            return once

        long_once = runner(long)
        warm = runner(fresh[-1])
        for _ in range(5):
            long_once()
            warm()
        ratios, long_p50, fresh_p50, rounds = [], [], [], []
        for i in range(cfg.rounds):
            a, b = alternating(long_once, runner(fresh[i]), cfg.sequential_commands)
            la, lb = statistics.median(a), statistics.median(b)
            long_p50.append(la)
            fresh_p50.append(lb)
            ratios.append(la / lb)
            rounds.append(
                {
                    "long_p50_ms": round(la, 3),
                    "fresh_p50_ms": round(lb, 3),
                    "long_p90_ms": round(percentile(a, 90) or 0, 3),
                    "fresh_p90_ms": round(percentile(b, 90) or 0, 3),
                    "commands_each": len(a),
                }
            )
            log(f"  long {la:.2f} ms vs fresh {lb:.2f} ms (p50)")
        self.figures.add(
            Figure(
                "K0",
                "PUT default p50, fresh account (one at a time)",
                "ms",
                fresh_p50,
                group="history",
                detail={"rounds": rounds},
            )
        )
        self.figures.add(
            Figure(
                "K1",
                f"PUT default p50, account with {self.raw['long_account']['events']:,} events",
                "ms",
                long_p50,
                baseline="K0",
                target="<= 1.5x",
                check=lambda v, r: r is not None and r <= 1.5,
                group="history",
            )
        )

    def audit_long_vs_fresh(self, port: int, long: Any, fresh: list[Any]) -> None:
        """Sequential audit reads of the first profile (one connection each), the
        long-history account and a fresh one alternating: each read costs its
        page, not the account's history (the audit index)."""
        import http.client

        cfg = self.cfg
        reads = [
            ("A", "history?limit=1", "/v1/profiles/{id}/history?limit=1"),
            ("T", "?version=1", "/v1/profiles/{id}?version=1"),
            ("D", "audit/defaults?limit=1", "/v1/audit/defaults?limit=1"),
        ]

        def reader(account: Any, path: str) -> Any:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            auth = {"Authorization": f"Bearer {account.token}"}
            target = path.format(id=account.profiles[0])

            def once() -> float:
                t = time.perf_counter()
                status, _, payload = procs.http_request(port, "GET", target, headers=auth, conn=conn)
                dt = (time.perf_counter() - t) * 1000
                if status != 200:
                    raise RuntimeError(f"GET {target}: {status} {payload[:300]!r}")
                return dt

            return once

        events = self.raw["long_account"]["events"]
        for key, label, path in reads:
            long_once, warm = reader(long, path), reader(fresh[-1], path)
            for _ in range(5):
                long_once()
                warm()
            long_p50, fresh_p50, rounds = [], [], []
            for i in range(cfg.rounds):
                a, b = alternating(long_once, reader(fresh[i], path), cfg.sequential_commands)
                la, lb = statistics.median(a), statistics.median(b)
                long_p50.append(la)
                fresh_p50.append(lb)
                rounds.append(
                    {"long_p50_ms": round(la, 3), "fresh_p50_ms": round(lb, 3), "reads_each": len(a)}
                )
                log(f"  {label}: long {la:.2f} ms vs fresh {lb:.2f} ms (p50)")
            self.figures.add(
                Figure(f"{key}0", f"GET {label} p50, fresh account", "ms", fresh_p50, group="audit")
            )
            self.figures.add(
                Figure(
                    f"{key}1",
                    f"GET {label} p50, account with {events:,} events",
                    "ms",
                    long_p50,
                    baseline=f"{key}0",
                    target="<= 1.5x",
                    check=lambda v, r: r is not None and r <= 1.5,
                    group="audit",
                    detail={"rounds": rounds},
                )
            )

    # --- against the CRUD baseline ---------------------------------------------------

    def stage_crud(self) -> None:
        """The service and the CRUD baseline (benchmarks/crud_app.py) on the same
        data, both running, measured in alternating rounds on the four figures a
        user weighs: GET default, GET list, PUT default (each a real switch), POST."""
        from harness import seed

        from infrastructure.container import build
        from infrastructure.settings import Settings

        cfg = self.cfg
        self.containers["x"] = container = build(Settings(database_url=self.urls["x"], api_threads=1))
        log(f"CRUD comparison: seeding {cfg.query_accounts:,} accounts (2 profiles each) through the domain")
        accounts = seed.create_accounts(container, cfg.query_accounts, "versus")
        seed.seed_profiles(container.app, accounts, 2)
        self.raw["crud_rebuild"] = self.rebuild("x")
        self.copy_to_crud(container)

        svc = self.start_service("versus-crud", "x")
        port = procs.free_port()
        crud = procs.Started(
            "CRUD baseline",
            [str(PYTHON), str(HERE / "crud_app.py"), "--port", str(port), "--database-url", self.urls["x"]],
            self.service_env("x"),
            port,
            self.workdir / "crud.log",
            HERE,
        )
        crud.start("/healthz")
        self.started.append(crud)
        try:
            self.versus(svc, crud, accounts)
        finally:
            self.stop(crud)
            self.stop(svc)

    def copy_to_crud(self, container: Any) -> None:
        """The CRUD schema, filled with the service's accounts, tokens and read-table rows."""
        from crud_app import ddl

        from infrastructure.profiles_sql import TABLE

        with psycopg.connect(**self.dbs["x"], autocommit=True) as conn, conn.transaction():
            for statement in ddl(CRUD_SCHEMA):
                conn.execute(statement)
            crud = sql.Identifier(CRUD_SCHEMA)
            conn.execute(sql.SQL("INSERT INTO {}.accounts SELECT id, name, role FROM accounts").format(crud))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.api_tokens SELECT token_id, account_id, secret_hash FROM api_tokens"
                ).format(crud)
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.racer_profiles SELECT id, account_id, name, details, vehicles,"
                    " vehicle_count, archived, is_default, version, created_at, updated_at FROM {}"
                ).format(crud, sql.Identifier(TABLE))
            )
        self.sql("x", "ANALYZE")

    def switch_tokens(self, name: str, table: sql.Composable, accounts: list[Any]) -> Path:
        """Tokens with the two profiles to alternate, the one that is not the
        default now first: every PUT of the next run is a real switch."""
        defaults = dict(
            self.sql("x", sql.SQL("SELECT account_id, id FROM {} WHERE is_default").format(table))
        )
        lines = []
        for a in accounts:
            first, second = (str(p) for p in a.profiles[:2])
            if str(defaults.get(a.account_id)) == first:
                first, second = second, first
            lines.append(f"{a.token}\t{first}\t{second}")
        return self.write_lines(name, lines)

    def versus(self, svc: procs.Started, crud: procs.Started, accounts: list[Any]) -> None:
        from infrastructure.profiles_sql import TABLE

        cfg = self.cfg
        tokens = self.write_lines("versus-tokens.txt", [a.token for a in accounts])
        create = self.workdir / "versus-create.json"
        create.write_text(
            json.dumps({"name": "Bench racer", "vehicles": [{"name": "Rotax Max", "race_number": "07"}]})
        )
        switch = self.workdir / "versus-switch.json"
        switch.write_text('{"profile_id": "%PROFILE%"}')
        sides = {
            "rp": (svc, sql.Identifier(TABLE), {"service": svc.pids()}),
            "crud": (
                crud,
                sql.SQL("{}.racer_profiles").format(sql.Identifier(CRUD_SCHEMA)),
                {"service": crud.pids()},
            ),
        }

        events = sql.Identifier(self.containers["x"].app.recorder.events_table_name)
        switches = {
            # The service records a switch as a roster event; the CRUD service bumps two rows' versions.
            "rp": sql.SQL("SELECT count(*) FROM {} WHERE topic LIKE '%%DefaultChanged'").format(events),
            "crud": sql.SQL("SELECT coalesce(sum(version), 0) / 2 FROM {}").format(sides["crud"][1]),
        }

        def load(
            side: str, method: str, path: str, body: Path | None, duration: int, profile: bool = False
        ) -> loadgen.WrkResult:
            proc, table, services = sides[side]
            toks = tokens
            if method == "PUT":
                if side == "rp":
                    self.wait_caught_up("x")
                toks = self.switch_tokens(f"switch-{side}.txt", table, accounts)
                before = self.sql("x", switches[side])[0][0]
            spy = self.py_spy(svc, f"{side}-{method}-{path}") if side == "rp" and profile else None
            r = self.wrk(
                f"V-{side}",
                proc.port,
                method,
                path,
                duration=duration,
                tokens=toks,
                body=body,
                services=services,
                record=duration == cfg.duration,
            )
            if spy is not None:
                spy.wait(timeout=60)
            if method == "PUT":
                # Every answered PUT must have been a real switch, on both sides.
                r.cpu["switches"] = int(self.sql("x", switches[side])[0][0] - before)
                if r.cpu["switches"] < r.count(200):
                    self.notes.append(
                        f"{side} PUT default: {r.count(200)} answered, {r.cpu['switches']} switches"
                    )
            return r

        for key, method, path, body, what, target in (
            ("d", "GET", "/v1/profiles/default", None, "GET /v1/profiles/default", 0.9),
            ("l", "GET", "/v1/profiles", None, "GET /v1/profiles", 0.9),
            ("s", "PUT", "/v1/profiles/default", switch, "PUT /v1/profiles/default, each a real switch", 0.5),
            ("c", "POST", "/v1/profiles", create, "POST /v1/profiles", 0.5),
        ):
            log(f"CRUD comparison: {what}, alternating rounds")
            runs: dict[str, list[loadgen.WrkResult]] = {"rp": [], "crud": []}
            for side in ("rp", "crud"):
                load(side, method, path, body, cfg.warmup)
            for i in range(cfg.rounds):
                for side in ("rp", "crud") if i % 2 == 0 else ("crud", "rp"):
                    runs[side].append(load(side, method, path, body, cfg.duration, profile=i == 0))
                log(
                    f"  service {runs['rp'][-1].rps:,.0f} req/s (p99 {runs['rp'][-1].p99_ms:.1f} ms), "
                    f"CRUD {runs['crud'][-1].rps:,.0f} req/s (p99 {runs['crud'][-1].p99_ms:.1f} ms)"
                )
            self.versus_figures(key, what, runs, target, p99_target=2.0 if target == 0.5 else None)

    def py_spy(self, svc: procs.Started, what: str) -> subprocess.Popen[bytes] | None:
        """py-spy on serve and its projector child for the coming round, as
        collapsed stacks (flamegraph.pl or speedscope read them)."""
        if not self.args.py_spy:
            return None
        tool = VENV / "bin" / "py-spy"
        if not tool.exists():
            self.notes.append("--py-spy: py-spy is missing (pip install -e '.[bench]')")
            return None
        name = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
        out = HERE / "results" / f"{self.stamp}-py-spy-{name}.txt"
        out.parent.mkdir(exist_ok=True)
        return subprocess.Popen(
            [
                str(tool),
                "record",
                "--pid",
                str(svc.pids()[0]),
                "--subprocesses",
                "--nonblocking",
                "--gil",
                "--format",
                "raw",
                "--duration",
                str(self.cfg.duration),
                "--rate",
                "250",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def versus_figures(
        self,
        key: str,
        what: str,
        runs: dict[str, list[loadgen.WrkResult]],
        target: float,
        p99_target: float | None,
    ) -> None:
        crud, rp = runs["crud"], runs["rp"]
        group = "against the CRUD baseline"
        self.figures.add(
            Figure(
                f"V0{key}",
                f"CRUD baseline: {what}, 16 connections",
                "req/s",
                [r.rps for r in crud],
                group=group,
                detail={"rounds": [r.as_dict() for r in crud]},
                error=_problems(f"CRUD {what}", crud),
            )
        )
        for pct in ("p50", "p99"):
            self.figures.add(
                Figure(
                    f"V0{key}-{pct}",
                    f"  CRUD {pct} latency",
                    "ms",
                    [getattr(r, f"{pct}_ms") for r in crud],
                    group=group,
                )
            )
        self.figures.add(
            Figure(
                f"V1{key}",
                f"service: {what}, 16 connections",
                "req/s",
                [r.rps for r in rp],
                baseline=f"V0{key}",
                target=f">= {target}x",
                check=lambda v, r, t=target: r is not None and r >= t,
                group=group,
                detail={"rounds": [r.as_dict() for r in rp]},
                error=_problems(f"service {what}", rp),
            )
        )
        self.figures.add(
            Figure(
                f"V1{key}-p50",
                "  service p50 latency",
                "ms",
                [r.p50_ms for r in rp],
                baseline=f"V0{key}-p50",
                group=group,
            )
        )
        p99 = self.figures.add(
            Figure(
                f"V1{key}-p99",
                "  service p99 latency",
                "ms",
                [r.p99_ms for r in rp],
                baseline=f"V0{key}-p99",
                group=group,
            )
        )
        if p99_target is not None:
            p99.target = f"<= {p99_target:g}x"
            p99.check = lambda v, r, t=p99_target: r is not None and r <= t
        # CPU per request (the service's processes and the database's backends):
        # what a request costs, much less swayed by other load than req/s.
        self.figures.add(
            Figure(
                f"V0{key}-cpu",
                "  CRUD CPU per request (service + PostgreSQL)",
                "ms",
                _cpu_ms(crud),
                group=group,
            )
        )
        self.figures.add(
            Figure(
                f"V1{key}-cpu",
                "  service CPU per request (service + PostgreSQL)",
                "ms",
                _cpu_ms(rp),
                baseline=f"V0{key}-cpu",
                group=group,
            )
        )

    # --- stage 2: 100,000 accounts ----------------------------------------------------

    def stage_large(self) -> None:
        from harness import seed

        cfg = self.cfg
        container = self.containers["q"]
        # First a quarter of the accounts and one rebuild (its peak RSS is the
        # reference of "flat in the event count"), then all of them.
        mid = None
        for target in (cfg.large_accounts // 4, cfg.large_accounts):
            have = self.read_table_accounts("q") if mid is None else self.raw["seed_stage2"][-1]["to"]
            n = max(0, target - have)
            log(f"stage 2: seeding {n:,} more accounts (to {target:,} in the read table)")
            (written, method), secs = seed.timed(
                lambda n=n: seed.copy_accounts(container.app, container, n, lambda m: log(m))
            )
            self.raw.setdefault("seed_stage2", []).append(
                {"accounts": n, "to": target, "events": written, "method": method, "seconds": round(secs, 2)}
            )
            self.sql("q", "ANALYZE")
            if mid is None:
                log("stage 2: rebuild at a quarter of the accounts")
                mid = self.rebuild("q")

        log("stage 2: rebuild over every event (racer-profiles rebuild)")
        reserve = 2 * (cfg.warmup + cfg.rounds * (cfg.duration + 0.5)) + 40  # queries, workers, teardown
        if self.workers_supported():
            reserve += cfg.warmup + cfg.rounds * (cfg.duration + 0.5) + 15
        large = [self.rebuild("q")]
        while len(large) < cfg.rounds:
            if self.elapsed() + large[0]["wall_s"] + reserve > cfg.budget:
                self.notes.append(
                    f"rebuild over {large[0]['events']:,} events: {len(large)} round(s), not {cfg.rounds}: "
                    f"another ({large[0]['wall_s']:.0f}s) would pass the {cfg.budget:.0f}s budget"
                )
                break
            large.append(self.rebuild("q"))
        self.rebuild_figures([mid], large)

        svc = self.start_service("stage2", "q")
        n_accounts = self.read_table_accounts("q")
        self.raw["stage2_accounts_in_read_table"] = n_accounts
        self.raw["rss_idle_stage2_mb"] = round(svc.rss_mb(), 1)
        self.query_series("2", n_accounts)
        self.rss_after_queries = svc.own_rss_mb()
        self.stop(svc)
        self.workers_figure(n_accounts)

    def rebuild_figures(self, small: list[dict[str, Any]], large: list[dict[str, Any]]) -> None:
        ev_large, ev_small = large[0]["events"], small[0]["events"]
        self.figures.add(
            Figure(
                "R1",
                f"rebuild events/s over {ev_large:,} events (CLI, wall)",
                "ev/s",
                [r["events_per_s"] for r in large],
                baseline="B2",
                target=">= 3x",
                check=lambda v, r: r is not None and r >= 3.0,
                group="rebuild",
                detail={"rounds": large},
            )
        )
        self.figures.add(
            Figure(
                "R2",
                f"rebuild peak RSS, {ev_large:,} events",
                "MB",
                [r["peak_rss_mb"] for r in large],
                target="<= 150 MB",
                check=lambda v, r: v <= 150.0,
                group="rebuild",
            )
        )
        self.figures.add(
            Figure(
                "R3",
                f"rebuild peak RSS, {ev_small:,} events",
                "MB",
                [r["peak_rss_mb"] for r in small],
                group="rebuild",
                detail={"rounds": small},
            )
        )
        self.figures.add(
            Figure(
                "R4",
                f"rebuild peak RSS growth, {ev_large:,} vs {ev_small:,} events",
                "MB",
                [r["peak_rss_mb"] for r in large],
                baseline="R3",
                target="<= 1.10x (flat)",
                check=lambda v, r: r is not None and r <= 1.10,
                group="rebuild",
            )
        )

    def memory_figures(self) -> None:
        def rounds(name: str) -> list[float]:
            value = getattr(self, name, None)
            return [value] if value is not None else []

        def err(name: str) -> str | None:
            return None if getattr(self, name, None) is not None else "not measured (its stage failed)"

        self.figures.add(
            Figure(
                "M1",
                "API process RSS idle (after start)",
                "MB",
                rounds("rss_idle"),
                group="memory",
                error=err("rss_idle"),
            )
        )
        self.figures.add(
            Figure(
                "M2",
                "API process RSS after the command loads",
                "MB",
                rounds("rss_after_commands"),
                target="<= 120 MB",
                check=lambda v, r: v <= 120.0,
                group="memory",
                error=err("rss_after_commands"),
            )
        )
        self.figures.add(
            Figure(
                "M3",
                "API process RSS after the query loads (large stage)",
                "MB",
                rounds("rss_after_queries"),
                target="<= 120 MB",
                check=lambda v, r: v <= 120.0,
                group="memory",
                error=err("rss_after_queries"),
            )
        )
        self.figures.add(
            Figure(
                "M4",
                "serve's processes together (API + projector) after the command loads",
                "MB",
                rounds("rss_serve_total_after_commands"),
                group="memory",
                error=err("rss_serve_total_after_commands"),
            )
        )

    def workers_supported(self) -> bool:
        if not hasattr(self, "_workers"):
            try:
                out = subprocess.run(
                    [str(RACER), "serve", "--help"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env={**self.service_env(), "COLUMNS": "200"},
                )
                self._workers = "--workers" in out.stdout
            except (OSError, subprocess.TimeoutExpired):
                self._workers = False
        return self._workers

    def workers_figure(self, accounts: int) -> None:
        cfg = self.cfg
        key, label = "W2", "GET /v1/profiles/default req/s, 2 workers (large stage)"
        if not self.workers_supported():
            self.figures.add(
                Figure(
                    key,
                    label,
                    "req/s",
                    baseline="Q2d-rps",
                    target=">= 1.7x",
                    check=lambda v, r: r is not None and r >= 1.7,
                    group="workers",
                    error="not measurable yet (no multi-worker mode)",
                )
            )
            return
        log("workers: GET /v1/profiles/default with serve --workers 2")
        try:
            svc = self.start_service("workers2", "q", workers=2)
        except RuntimeError as e:
            self.figures.add(
                Figure(
                    key,
                    label,
                    "req/s",
                    baseline="Q2d-rps",
                    target=">= 1.7x",
                    check=lambda v, r: r is not None and r >= 1.7,
                    group="workers",
                    error=f"serve --workers 2 did not start: {str(e)[:300]}",
                )
            )
            return
        try:
            port = svc.port
            self.wrk(
                "W2",
                port,
                "GET",
                "/v1/profiles/default",
                duration=cfg.warmup,
                tokens=self.query_tokens,
                record=False,
            )
            runs = [
                self.wrk("W2", port, "GET", "/v1/profiles/default", tokens=self.query_tokens)
                for _ in range(cfg.rounds)
            ]
            self.figures.add(
                Figure(
                    key,
                    label,
                    "req/s",
                    [r.rps for r in runs],
                    baseline="Q2d-rps",
                    error=_problems("GET default (2 workers)", runs),
                    target=">= 1.7x",
                    check=lambda v, r: r is not None and r >= 1.7,
                    group="workers",
                    detail={
                        "rounds": [r.as_dict() for r in runs],
                        "rss_mb": round(svc.rss_mb(), 1),
                        "processes": len(svc.pids()),
                    },
                )
            )
        finally:
            self.stop(svc)

    # --- the end ------------------------------------------------------------------

    def loadgen_figures(self) -> None:
        by_tool: dict[str, list[dict[str, Any]]] = {}
        for r in self.loadgen:
            by_tool.setdefault(r["tool"], []).append(r)
        for tool, runs in sorted(by_tool.items(), reverse=True):
            shares = [100 * r["loadgen_share"] for r in runs]
            worst = max(runs, key=lambda r: r["loadgen_share"])
            self.figures.add(
                Figure(
                    f"G-{tool}",
                    f"{tool} CPU share of the machine (its runs; max in {worst['measurement']})",
                    "%",
                    shares,
                    group="load generator and background",
                    note="median over every measured run; min..max",
                )
            )
        if self.loadgen:
            worst = max(self.loadgen, key=lambda r: r["background_share"])
            self.figures.add(
                Figure(
                    "G-bg",
                    f"CPU used by other processes during the runs (max in {worst['measurement']})",
                    "%",
                    [100 * r["background_share"] for r in self.loadgen],
                    group="load generator and background",
                    note="machine busy minus load generator, services and the benchmark's PostgreSQL backends",
                )
            )

    def document(self) -> dict[str, Any]:
        rows = self.figures.rows()
        return {
            "benchmark": "racer-profiles",
            "started_utc": self.stamp,
            "runtime_s": round(self.elapsed(), 1),
            "complete": not self.failed,
            "config": {k: getattr(self.cfg, k) for k in self.cfg.__dataclass_fields__},
            "machine": getattr(self, "machine", {}),
            "figures": rows,
            "load_generator_runs": self.loadgen,
            "raw": self.raw,
            "notes": self.notes,
            "methods": METHODS,
        }

    def cleanup(self) -> None:
        for svc in list(self.started):
            self.stop(svc)
        for container in self.containers.values():
            with contextlib.suppress(Exception):
                container.close()
        if not self.args.keep_db:
            for name in self.dbnames.values():
                try:
                    with psycopg.connect(**self.server, autocommit=True) as conn:
                        conn.execute(
                            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                        )
                except psycopg.Error as e:
                    print(f"could not drop database {name}: {e}", file=sys.stderr)
        if self.failed or self.args.keep_logs:
            print(f"logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


METHODS = {
    "rounds": "each figure is the median of its rounds, with min and max; a warm-up precedes each series",
    "http_load": "wrk (Debian package), 2 threads, 16 keep-alive connections unless stated, closed loop; "
    "latency percentiles are wrk's; its CPU share is from wait4() of the wrk process",
    "distinct_accounts": "1,000 command accounts, split between wrk's threads and sent round-robin: "
    "concurrent requests are on distinct accounts",
    "read_your_writes_lag": "exact, not sampled: see benchmarks/harness/lag.py (commit NOTIFY of each event "
    "transaction, paired by xmin, vs a tracking-table trigger's NOTIFY)",
    "rebuild": "`racer-profiles rebuild` as a user runs it, wall time including start-up; peak RSS is "
    "ru_maxrss of that process from wait4()",
    "seeding": "in-process through the project's domain and save(); the large stage copies one "
    "domain-made account's events with fresh ids, personal fields sealed again under a fresh data key "
    "per copy, and recomputed hash chains (checked), see benchmarks/harness/seed.py",
    "memory": "VmRSS from /proc: M1-M3 of the API process alone (serve's own process), M4 of serve with its "
    "projector child",
}


def alternating(
    first: Callable[[], float], second: Callable[[], float], n: int
) -> tuple[list[float], list[float]]:
    """n timings of each, taken in alternating order so that drift hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for j in range(n):
        if j % 2:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b


def _problems(what: str, runs: list[loadgen.WrkResult]) -> str | None:
    """A description of failed requests in the runs, else None."""
    out = []
    for i, r in enumerate(runs):
        bad = r.non_2xx()
        socket_errors = {k: v for k, v in r.errors.items() if k != "status" and v}
        if bad or socket_errors:
            out.append(
                f"round {i + 1}: {bad} non-2xx of {r.requests} {r.statuses}"
                + (f", socket errors {socket_errors}" if socket_errors else "")
            )
    if out:
        log(f"  {what}: " + "; ".join(out))
        return f"{what}: " + "; ".join(out)
    return None


def _cpu_ms(runs: list[loadgen.WrkResult]) -> list[float]:
    """CPU milliseconds per request of each run: the service's processes and the
    benchmark database's backends (one side is loaded at a time)."""
    return [
        1000 * (r.cpu["service_cores"] + r.cpu["postgres_bench_cores"]) * r.cpu["wall_s"] / r.requests
        for r in runs
        if r.requests and "service_cores" in r.cpu
    ]


def _delta(before: dict[str, float], after: dict[str, float], key: str) -> int | None:
    if not after:
        return None
    return int(after.get(key, 0.0) - before.get(key, 0.0))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def main() -> int:
    args, cfg = parse_args()
    missing = [
        t
        for t, default in (("wrk", "/usr/bin/wrk"), ("pgbench", "/usr/bin/pgbench"))
        if not loadgen.find_tool(t, default)
    ]
    if missing:
        for tool in missing:
            print(loadgen.INSTALL_HINT[tool], file=sys.stderr)
        return 2
    if not RACER.exists():
        print(
            f"{RACER} is missing: run `make test` or `make run` once to create the virtualenv",
            file=sys.stderr,
        )
        return 2
    bench = Bench(args, cfg)
    code = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.failed = True
        bench.notes.append("interrupted")
        code = 130
    except Exception as e:
        bench.failed = True
        bench.notes.append(f"failed: {e!r}")
        traceback.print_exc()
        for svc in bench.started:
            print(f"--- {svc.name} log tail ---\n{svc.log_tail()}", file=sys.stderr)
        code = 1
    finally:
        bench.cleanup()
    bench.loadgen_figures()
    bench.against_previous_run(HERE / "results")
    doc = bench.document()
    text = report.table(doc["figures"])
    m = doc["machine"]
    print()
    print(
        f"racer-profiles benchmark, {doc['started_utc']}, {doc['runtime_s']:.0f}s"
        f"{'' if doc['complete'] else ' (INCOMPLETE)'}"
    )
    if m:
        print(f"machine: {report.machine_line(m)}")
    print(text)
    for row in doc["figures"]:
        if row["error"]:
            print(f"{row['key']}: {row['error']}")
    for note in doc["notes"]:
        print(f"note: {note}")
    payload = json.dumps(doc, indent=2, default=str)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(payload)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    suffix = ("-quick" if cfg.quick else "") + (f"-{cfg.only}" if cfg.only else "")
    copy = results / f"{doc['started_utc']}{suffix}.json"
    copy.write_text(payload)
    copy.with_suffix(".md").write_text(report.markdown(doc, cfg.quick))
    print(f"\nwrote {args.out} and {copy}")
    return code


if __name__ == "__main__":
    sys.exit(main())
