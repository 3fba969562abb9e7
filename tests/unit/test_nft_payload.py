"""The nftables element lists written as JSON text equal what json.dumps makes of the dict form.

The text path exists for speed only (tests/integration covers what the kernel does with it); a
difference here would send nft something else than the readable dict form says.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from banish.actions.nftables import _elements, _elements_text, _SetKey, _timed, _val

SHAPES = [("sshd", 4, 32), ("sshd", 6, 128), ("web-1", 4, 24), ("web-1", 6, 64),
          ('odd"name\\', 4, 32)]
timeouts = st.one_of(st.none(), st.integers(1, 10**9))


@given(
    shape=st.sampled_from(SHAPES),
    numbers=st.lists(st.integers(0, 2**128 - 1), max_size=20, unique=True),
    times=st.lists(timeouts, min_size=20, max_size=20),
    cmd=st.sampled_from(["add", "delete"]),
    timed=st.booleans(),
)
def test_text_equals_dict_form(shape: tuple[str, int, int], numbers: list[int],
                               times: list[int | None], cmd: str, timed: bool) -> None:
    key = _SetKey(*shape)
    bits = 32 if key.version == 4 else 128
    elems = {n % (1 << bits): t for n, t in zip(numbers, times, strict=False)}
    vals = [_val(key.version, key.prefixlen, n) for n in elems]
    if timed:
        vals = [_timed(v, t) for v, t in zip(vals, elems.values(), strict=True)]
    assert json.loads(_elements_text(cmd, key, elems, timed=timed)) == _elements(
        cmd, key.name, vals)


def test_examples_read_as_expected() -> None:
    text = _elements_text("add", _SetKey("sshd", 4, 24), {0xC0000200: 600, 0x0A000000: None})
    assert json.loads(text)["add"]["element"]["elem"] == [
        {"elem": {"val": {"prefix": {"addr": "192.0.2.0", "len": 24}}, "timeout": 600}},
        {"prefix": {"addr": "10.0.0.0", "len": 24}},
    ]
    text = _elements_text("delete", _SetKey("sshd", 6, 128), {1: 5}, timed=False)
    assert json.loads(text) == {"delete": {"element": {
        "family": "inet", "table": "banish", "name": "sshd-v6", "elem": ["::1"]}}}
