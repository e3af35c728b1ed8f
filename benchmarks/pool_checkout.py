"""What a checkout costs with each way of skipping dead connections: the
library's datastore unchecked, this project's CheckedDatastore (a no-wait
poll of the socket; a round trip only when it shows something), and
psycopg_pool's `check=ConnectionPool.check_connection` (POSTGRES_PRE_PING: a
round trip on every checkout). Each checkout runs `SELECT 1`, as the
cheapest statement a request makes.

    python benchmarks/pool_checkout.py [--url postgresql://...] [--n 5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from infrastructure.dead_connections import CheckedDatastore


def datastore(cls: type[PostgresDatastore], info: dict[str, Any], pre_ping: bool) -> PostgresDatastore:
    return cls(
        dbname=str(info.get("dbname", "postgres")),
        host=str(info.get("host", "127.0.0.1")),
        port=str(info.get("port", "5432")),
        user=str(info.get("user", "postgres")),
        password=str(info.get("password", "")),
        pool_size=2,
        pre_ping=pre_ping,
    )


def per_checkout_us(store: PostgresDatastore, n: int) -> float:
    for _ in range(100):  # warm up: connections open, statement prepared
        with store.get_connection() as conn:
            conn.execute("SELECT 1", prepare=True)
    started = time.perf_counter()
    for _ in range(n):
        with store.get_connection() as conn:
            conn.execute("SELECT 1", prepare=True)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--url", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    info = conninfo_to_dict(args.url)
    kinds = {
        "unchecked (library default)": (PostgresDatastore, False),
        "CheckedDatastore (socket poll)": (CheckedDatastore, False),
        "check_connection every checkout": (PostgresDatastore, True),
    }
    figures: dict[str, list[float]] = {k: [] for k in kinds}
    stores = {k: datastore(cls, info, ping) for k, (cls, ping) in kinds.items()}
    try:
        for _ in range(args.rounds):  # alternating rounds: a busy machine hurts each alike
            for kind, store in stores.items():
                figures[kind].append(per_checkout_us(store, args.n))
    finally:
        for store in stores.values():
            store.close()
    for kind, values in figures.items():
        print(
            f"{kind:34s} median {statistics.median(values):7.1f} us per checkout + SELECT 1 "
            f"(rounds: {', '.join(f'{v:.1f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
