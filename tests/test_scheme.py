"""Scheme files and the w<W>a<A> shorthand (micoc.scheme)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from micoc.errors import InputError
from micoc.scheme import check_scheme, load_scheme, parse_bits, save_scheme, uniform


def test_parse_bits() -> None:
    assert parse_bits("w4a8") == (4, 8)
    assert parse_bits(" W1A2 ") == (1, 2)
    for bad in ("w4", "4a8", "w0a8", "w4a9", "a8w4", "w4a8x"):
        with pytest.raises(InputError):
            parse_bits(bad)


def test_load_and_save_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"a": {"w": 1, "a": 8}, "b": {"a": 2, "w": 4}}))
    scheme = load_scheme(p)
    assert scheme == {"a": (1, 8), "b": (4, 2)}
    save_scheme(scheme, tmp_path / "t.json")
    assert load_scheme(tmp_path / "t.json") == scheme


def test_every_problem_in_one_error(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"a": {"w": 0, "a": 8}, "b": {"w": 4}, "c": {"w": 4, "a": True}}))
    with pytest.raises(InputError) as e:
        load_scheme(p)
    msg = str(e.value)
    assert str(p) in msg and 'layer "a"' in msg and 'layer "b"' in msg and 'layer "c"' in msg


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text('{\n  "a": {"w": 4, "a": 4},\n  oops\n}')
    with pytest.raises(InputError) as e:
        load_scheme(p)
    assert e.value.where == f"{p}:3:3"


def test_check_against_layers() -> None:
    layers = ["conv1", "fc"]
    check_scheme(uniform(layers, 4, 4), layers)
    with pytest.raises(InputError) as e:
        check_scheme({"conv1": (4, 4), "nope": (2, 2)}, layers)
    assert 'unknown layer "nope"' in str(e.value) and 'missing layer "fc"' in str(e.value)
