"""The enforcer's bookkeeping with a real store file and real nftables in a throw-away namespace.

A big batch is committed in a worker thread while the firewall applies it in slices; these tests
hold the promises that make that safe: every new ban ends up in the store, in memory and in the
kernel; a ban in flight is not banned twice; a store that fails takes the firewall change back;
a slice the firewall refuses is retried, not dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from banish.actions.nftables import NftablesBackend
from banish.daemon.enforcer import APPLY_SLICE, Enforcer
from banish.store.base import Ban, BanKey
from banish.store.sqlite import SqliteStore
from tests.integration.netns import Namespace, skip_reason
from tests.integration.probes import SSHD, NftProbe, namespace_or_skip

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

NOW = 1_700_000_000.0


@pytest.fixture
def ns() -> Iterator[Namespace]:
    yield from namespace_or_skip()


def hosts(count: int, v6_every: int = 3, base: int = 0) -> list[str]:
    """Distinct canonical addresses, every ``v6_every``-th one IPv6."""
    return [str(ipaddress.IPv6Address((0x2001_0DB8 << 96) + base + n)) if n % v6_every == 0
            else str(ipaddress.IPv4Address((198 << 24) + (18 << 16) + base + n))
            for n in range(count)]


def bans(addresses: list[str], bantime: int = 600) -> list[Ban]:
    return [Ban(a, "sshd", NOW, bantime) for a in addresses]


def enforcer(ns: Namespace, tmp_path: Path) -> Enforcer:
    store = SqliteStore(tmp_path / "banish.sqlite3")
    enf = Enforcer(store, lambda name: NftablesBackend(netns=ns.name))
    asyncio.run(enf.start({"sshd": ("nftables", SSHD)}, NOW))
    return enf


def test_a_batch_bigger_than_a_slice_lands_everywhere_once(ns: Namespace, tmp_path: Path) -> None:
    enf = enforcer(ns, tmp_path)
    addresses = [*hosts(APPLY_SLICE * 2 + 123), "203.0.113.0/24", "2001:db8:ff::/64"]
    batch = bans(addresses + addresses[:50])  # duplicates in the batch count once

    async def twice() -> list[list[Ban]]:  # the same batch again while the first is in flight
        return list(await asyncio.gather(enf.ban(batch, NOW), enf.ban(batch, NOW)))

    first, second = asyncio.run(twice())
    assert len(first) == len(addresses) and second == []
    assert set(NftProbe(ns).bans("sshd")) == {ipaddress.ip_network(a) for a in addresses}
    assert {a.address for a in enf.store.active_bans(NOW)} == set(addresses)
    assert len(enf.store.ban_history()) == len(addresses)  # nothing recorded twice
    assert set(enf.active.ban_keys()) == {BanKey(a, "sshd") for a in addresses}
    assert enf.total_banned == {"sshd": len(addresses)} and not enf.failed
    assert asyncio.run(enf.ban(bans(addresses[:10]), NOW)) == []  # active: nothing to do


def test_a_failing_store_keeps_the_firewall_change_and_writes_it_later(
        ns: Namespace, tmp_path: Path) -> None:
    """Fail closed: the kernel keeps bans the store could not record; they wait in memory
    (``durable`` is false, so no file position moves past them) and are written once the
    store works again."""
    enf = enforcer(ns, tmp_path)
    asyncio.run(enf.ban(bans(["198.51.100.1"]), NOW))
    path = tmp_path / "banish.sqlite3"
    enf.store.close()  # every later write fails
    waiting = hosts(APPLY_SLICE + 10)
    new = asyncio.run(enf.ban(bans(waiting), NOW))
    assert len(new) == len(waiting)
    assert len(NftProbe(ns).bans("sshd")) == len(waiting) + 1  # all in the kernel
    assert not enf.durable and len(enf.unsaved) == len(waiting) and "closed" in enf.store_error
    assert not enf._pending
    assert asyncio.run(enf.write_unsaved()) == 0 and len(enf.unsaved) == len(waiting)
    enf.store = SqliteStore(path)  # the disk has room again
    assert asyncio.run(enf.write_unsaved()) == len(waiting)
    assert enf.durable and enf.store_error == ""
    assert {b.address for b in enf.store.active_bans(NOW)} == {"198.51.100.1", *waiting}


def test_a_refused_slice_is_kept_and_retried(ns: Namespace, tmp_path: Path) -> None:
    enf = enforcer(ns, tmp_path)
    v4 = hosts(APPLY_SLICE + 1, v6_every=APPLY_SLICE * 10)[1:]  # exactly the first slice
    v6 = [str(ipaddress.IPv6Address((0x2001_0DB8 << 96) + n)) for n in range(1, 501)]
    NftProbe(ns).delete_set_by_hand("sshd", "sshd-v6")  # behind the backend's back
    new = asyncio.run(enf.ban(bans(v4 + v6), NOW))
    assert len(new) == len(v4) + len(v6)  # recorded: the store is the authority
    assert set(enf.failed) == {BanKey(a, "sshd") for a in v6}  # only the second slice
    assert len(NftProbe(ns).bans("sshd")) == len(v4)
    asyncio.run(enf.retry_failed(NOW))  # what the daemon's loop does next
    assert len(NftProbe(ns).bans("sshd")) == len(v4) + len(v6) and not enf.failed
