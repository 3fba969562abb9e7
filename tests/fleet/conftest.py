from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.postgres import Cluster, cluster, skip_reason


@pytest.fixture(scope="session")
def pg() -> Iterator[Cluster]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with cluster() as c:
        yield c
