"""The SQLite store behaves like a plain in-memory model under any sequence of operations."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from banish.events import NO_FIELDS
from banish.store import PERMANENT, Ban, BanCount, BanKey, SqliteStore

ADDRESSES = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "198.51.100.0/24"]
JAILS = ["sshd", "nginx"]
T0 = 1_700_000_000.0

# Half-seconds make ties happen; arbitrary floats check that a time comes back to the bit.
times = st.one_of(st.integers(0, 100).map(lambda t: T0 + t / 2),
                  st.floats(T0, T0 + 50, allow_nan=False, allow_infinity=False))
bans = st.builds(
    Ban,
    address=st.sampled_from(ADDRESSES),
    jail=st.sampled_from(JAILS),
    banned_at=times,
    bantime=st.sampled_from([PERMANENT, 0, 1, 5, 30, 100]),
    failures=st.integers(0, 5),
    matches=st.lists(
        # NUL is stored as a visible \x00 (tests/unit/test_store_sqlite.py).
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\0"),
                max_size=5),
        max_size=3,
    ).map(tuple),
    origin=st.sampled_from(["", "web1"]),
    # What action tags read but the store does not keep: the defaults, as the store gives back.
    ban_count=st.just(1),
    fields=st.just(NO_FIELDS),
    fid=st.none(),
)
keys = st.builds(BanKey, st.sampled_from(ADDRESSES), st.sampled_from(JAILS))


@dataclass
class Row:
    id: int
    ban: Ban


class StoreMatchesModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # In memory: the same SQL as on a file, fast enough to shrink a failure in seconds.
        # File behaviour (WAL, crashes, bad files) is tested in tests/unit/test_store_sqlite.py.
        self.store = SqliteStore(":memory:")
        self.history: list[Row] = []
        self.active: dict[BanKey, Ban] = {}
        self.next_id = 0

    def teardown(self) -> None:
        self.store.close()

    @rule(batch=st.lists(bans, max_size=6))
    def add(self, batch: list[Ban]) -> None:
        self.store.add_bans(batch)
        # Ids within a batch follow the address (sorted for speed), input order within one.
        for b in sorted(batch, key=lambda b: b.address):
            self.history.append(Row(self.next_id, b))
            self.next_id += 1
        for b in batch:
            new = Ban(b.address, b.jail, b.banned_at, b.bantime, origin=b.origin)
            old = self.active.get(b.key)
            if old is None or (
                old.expires_at is not None
                and (new.expires_at is None or new.expires_at > old.expires_at)
            ):
                self.active[b.key] = new

    @rule(ks=st.lists(keys, max_size=3, unique=True), forget=st.booleans())
    def remove(self, ks: list[BanKey], forget: bool) -> None:
        expected = sum(1 for k in ks if k in self.active)
        assert self.store.remove_bans(ks, forget=forget) == expected
        for k in ks:
            self.active.pop(k, None)
        if forget:
            self.history = [r for r in self.history if r.ban.key not in ks]

    @rule(now=times)
    def release(self, now: float) -> None:
        gone = sorted(
            (a for a in self.active.values() if a.expires_at is not None and a.expires_at <= now),
            key=lambda a: (a.expires_at, a.address, a.jail),
        )
        assert self.store.expired_bans(now) == gone
        assert self.store.release_expired(now) == gone
        for a in gone:
            del self.active[a.key]

    @precondition(lambda self: self.history)
    @rule(older_than=times, limit=st.none() | st.integers(0, 4))
    def purge(self, older_than: float, limit: int | None) -> None:
        def protected(r: Row) -> bool:
            a = self.active.get(r.ban.key)
            return a is not None and a.banned_at == r.ban.banned_at

        doomed = sorted(
            (r for r in self.history if r.ban.banned_at < older_than and not protected(r)),
            key=lambda r: (r.ban.banned_at, r.id),
        )
        if limit is not None:
            doomed = doomed[:limit]
        assert self.store.purge(older_than, limit) == len(doomed)
        ids = {r.id for r in doomed}
        self.history = [r for r in self.history if r.id not in ids]

    @rule(address=st.sampled_from(ADDRESSES), jail=st.none() | st.sampled_from(JAILS), since=times)
    def count(self, address: str, jail: str | None, since: float) -> None:
        rows = sorted(
            (
                r
                for r in self.history
                if r.ban.address == address
                and (jail is None or r.ban.jail == jail)
                and r.ban.banned_at >= since
            ),
            key=lambda r: (r.ban.banned_at, r.id),
        )
        expected = (
            BanCount(len(rows), rows[-1].ban.bantime, rows[-1].ban.banned_at)
            if rows
            else BanCount(0)
        )
        assert self.store.ban_count(address, jail, since) == expected

    @invariant()
    def same_active_bans(self) -> None:
        for now in (T0, T0 + 25, T0 + 200):
            expected = sorted(
                (a for a in self.active.values() if a.expires_at is None or a.expires_at > now),
                key=lambda a: (a.banned_at, a.address, a.jail),
            )
            assert self.store.active_bans(now) == expected

    @invariant()
    def same_history(self) -> None:
        expected = [r.ban for r in sorted(self.history, key=lambda r: (r.ban.banned_at, r.id))]
        assert self.store.ban_history() == expected


TestStoreMatchesModel = StoreMatchesModel.TestCase
TestStoreMatchesModel.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,
    # The explain phase re-runs a failing machine for minutes; shrinking alone takes seconds.
    phases=[p for p in Phase if p is not Phase.explain],
)
