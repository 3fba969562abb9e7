"""``banish fleet-schema``: the fleet's PostgreSQL schema as a script for the database owner.

A least-privilege node role may read and write the fleet's rows but not create tables, so the
owner makes the schema once: ``banish fleet-schema --grant banish_node | psql -d banish``.
Must not connect anywhere: it prints SQL.
"""

from __future__ import annotations

import argparse
import re
import sys

from ..errors import ConfigError

_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grant", metavar="ROLE",
                   help="also grant the node role what it needs (rows only, no DDL)")


def run(args: argparse.Namespace) -> int:
    from ..fleet.schema import schema_sql

    if args.grant is not None and not _ROLE.fullmatch(args.grant):
        raise ConfigError(f"--grant: {args.grant!r} is not a plain role name")
    sys.stdout.write(schema_sql(grant_to=args.grant))
    return 0
