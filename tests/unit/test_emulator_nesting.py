"""The local API server's limit on JSON nesting does not depend on the recursion limit."""

from __future__ import annotations

import sys

import pytest

from mabeam.local.apiserver._emulator import MAX_NESTING, decode_json, nested_too_deeply


def nest(depth: int, inner: bytes = b"1") -> bytes:
    return (
        b'{"a": ' * (depth // 2)
        + b"[" * (depth - depth // 2)
        + inner
        + b"]" * (depth - depth // 2)
        + b"}" * (depth // 2)
    )


@pytest.mark.parametrize("depth", [0, 1, 2, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 5_000])
def test_the_depth_is_counted_as_a_decoder_would(depth: int) -> None:
    assert nested_too_deeply(nest(depth)) == (depth > MAX_NESTING)


def test_brackets_in_strings_and_siblings_do_not_nest() -> None:
    assert not nested_too_deeply(b'["' + b"[" * 5_000 + b'"]')
    assert not nested_too_deeply(b'["\\"' + b"{" * 5_000 + b'\\\\"]')
    assert not nested_too_deeply(b"[" + b"[[]]," * 5_000 + b"[]]")


def test_too_deep_is_refused_whatever_the_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(40_000)  # as the operator sets it, in the same process in tests
        with pytest.raises(RecursionError, match="nested deeper"):
            decode_json(nest(MAX_NESTING + 1))
        assert decode_json(b"[[1]]") == [[1]]
    finally:
        sys.setrecursionlimit(old)
