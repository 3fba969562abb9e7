"""The fleet's tables in PostgreSQL, as versioned migrations, and the grants a node needs.

Owns the SQL of the schema: ``MIGRATIONS[i]`` upgrades from version i to i + 1 (append only:
databases in the field already ran the released steps). Nodes migrate when their role may
create tables; a least-privilege node role cannot, so the owner runs `schema_sql` once
(``banish fleet-schema --grant ROLE | psql``). Must not connect to anything.

Tables (all prefixed ``banish_`` so they can live beside other schemas):

- ``banish_events``: every shared ban and unban decision (its addresses as an array), in
  commit order (``id``), with the sender's idempotent ``key``; receivers read it by cursor,
  and a node that was never there (or lost its store) derives the active bans from it.
  Times are the database's own clock. Expired bans are purged a day after they end.
- ``banish_failures``: failures of jails with ``fleetmaxretry``, counted per address/jail.
- ``banish_nodes``: who is in the fleet, its version, last heartbeat, cursor and backlog.
- ``banish_meta``: the schema version.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE IF NOT EXISTS banish_meta (
            name  text PRIMARY KEY,
            value bigint NOT NULL
        )""",
        # One row per decision: every address a node banned at one moment, for one jail and
        # one bantime (a 100,000-address blocklist is one row, a log's ban one address).
        """CREATE TABLE banish_events (
            id         bigserial   PRIMARY KEY,
            key        uuid        NOT NULL UNIQUE,
            kind       text        NOT NULL,
            jail       text        NOT NULL,
            addresses  text[]      NOT NULL,
            node       text        NOT NULL,
            banned_at  timestamptz NOT NULL,
            expires_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        "CREATE INDEX banish_events_expires_at ON banish_events (expires_at)",
        """CREATE TABLE banish_failures (
            jail      text        NOT NULL,
            address   text        NOT NULL,
            node      text        NOT NULL,
            failed_at timestamptz NOT NULL
        )""",
        "CREATE INDEX banish_failures_lookup ON banish_failures (jail, address, failed_at)",
        "CREATE INDEX banish_failures_failed_at ON banish_failures (failed_at)",
        """CREATE TABLE banish_nodes (
            node       text        PRIMARY KEY,
            version    text        NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            last_seen  timestamptz NOT NULL DEFAULT now(),
            cursor     bigint      NOT NULL DEFAULT 0,
            queued     bigint      NOT NULL DEFAULT 0
        )""",
    ),
]

TABLES = ("banish_events", "banish_failures", "banish_nodes")


def schema_sql(grant_to: str | None = None) -> str:
    """The whole schema as one script for ``psql``: what a database owner runs once."""
    lines = ["BEGIN;"]
    for version, steps in enumerate(MIGRATIONS, start=1):
        lines.extend(f"{step};" for step in steps)
        lines.append("INSERT INTO banish_meta (name, value) VALUES ('schema', "  # noqa: S608
                     f"{version}) ON CONFLICT (name) DO UPDATE SET value = {version};")
    if grant_to is not None:
        lines.extend(grants(grant_to))
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def grants(role: str) -> list[str]:
    """What a node needs and nothing more: rows of the fleet tables, no DDL."""
    quoted = '"' + role.replace('"', '""') + '"'
    return [f"GRANT SELECT ON banish_meta TO {quoted};",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO {quoted};",
            f"GRANT USAGE ON SEQUENCE banish_events_id_seq TO {quoted};"]
