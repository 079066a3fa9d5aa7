# SPDX-License-Identifier: Apache-2.0
"""The pure pieces of the hardened API: body parsing, safe paths, log text, client address."""

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironic_python_agent import api, jsonbody, paths
from ironic_python_agent.extensions import base

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(value=json_values, ascii_only=st.booleans(), piece=st.integers(1, 64),
       threshold=st.integers(1, 16))
def test_streamed_parse_equals_json_loads(value, ascii_only, piece, threshold):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        expected = json.loads(raw)
    except ValueError:
        return  # lone surrogates: not UTF-8, rejected either way
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jsonbody, "BLOB_THRESHOLD", threshold)
        assert jsonbody.read(io.BytesIO(raw), len(raw), piece=piece) == expected


def test_long_strings_with_escapes_split_anywhere(monkeypatch):
    monkeypatch.setattr(jsonbody, "BLOB_THRESHOLD", 4)
    text = 'a\\"b\u00e9\U0001F600\n\t\\u' * 50
    raw = json.dumps({"k": text, "e": "\U0001F600" * 20}).encode()
    for piece in range(1, 20):
        assert jsonbody.read(io.BytesIO(raw), len(raw), piece=piece) == json.loads(raw)


@pytest.mark.parametrize("raw,needle", [
    (b"[" * 101 + b"]" * 101, "nested deeper than 100 levels"),
    (b'{"a": "\\q"}', "Invalid \\escape"),
    (b'{"a": "x', "unterminated string"),
    (b'{"a": "\xff"}', "not valid UTF-8"),
    (b'{"a": 1', "Expecting"),
    (b"", "Expecting value"),
])
def test_bad_bodies_name_the_problem(raw, needle):
    with pytest.raises(jsonbody.BodyError, match=None) as exc:
        jsonbody.loads(raw)
    assert needle in str(exc.value)


def test_deep_brackets_inside_strings_are_just_text():
    raw = json.dumps({"a": "[" * 5000}).encode()
    assert jsonbody.loads(raw) == {"a": "[" * 5000}


def test_structure_outside_strings_is_capped():
    with pytest.raises(jsonbody.BodyError, match="outside strings"):
        jsonbody.loads(b"[" + b"1," * (jsonbody.MAX_STRUCTURE // 2) + b"1]")


def test_short_body_is_an_error():
    with pytest.raises(jsonbody.BodyError, match="ended after 2 of 10"):
        jsonbody.read(io.BytesIO(b"{}"), 10)


@pytest.mark.parametrize("name,problem", [
    ("../tmp/x/victim", "path separator"), ("/tmp/x", "path separator"), ("..", "'..'"),
    (".", "'.'"), ("", "empty"), ("a\x00b", "control"), ("a\nb", "control"),
    ("x" * 201, "longer than 200"), ("a\\b", "path separator"),
])
def test_unsafe_names(name, problem):
    assert problem in paths.name_problem(name)
    with pytest.raises(ValueError):
        paths.child("/tmp", name, ".cache")


def test_safe_name_stays_in_its_directory(tmp_path):
    assert paths.name_problem("ubuntu-24.04.qcow2") is None
    assert paths.child(str(tmp_path), "img", ".cache") == str(tmp_path / "img.cache")
    (tmp_path / "link.cache").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="outside"):
        paths.child(str(tmp_path), "link", ".cache")


def test_log_safe_escapes_line_breaks_and_controls():
    assert api.log_safe("/v1/status") == "/v1/status"
    assert api.log_safe("/v1\n2030 FORGED\r\x1b[31m") == "/v1\\n2030 FORGED\\r\\x1b[31m"
    assert "\n" not in api.log_safe("é\u2028")
    assert api.log_safe("x" * 5000).endswith("...")


@pytest.mark.parametrize("remote,forwarded,proxies,expected", [
    ("127.0.0.1", "203.0.113.9", [], "127.0.0.1"),
    ("127.0.0.1", "203.0.113.9", ["10.0.0.0/8"], "127.0.0.1"),
    ("10.1.1.1", "203.0.113.9", ["10.0.0.0/8"], "203.0.113.9"),
    ("10.1.1.1", "198.51.100.1, 203.0.113.9, 10.2.2.2", ["10.0.0.0/8"], "203.0.113.9"),
    ("10.1.1.1", "not-an-ip", ["10.0.0.0/8"], "10.1.1.1"),
    ("10.1.1.1", None, ["10.0.0.0/8"], "10.1.1.1"),
])
def test_client_address(remote, forwarded, proxies, expected):
    assert api.client_address(remote, forwarded, api.parse_proxies(proxies)) == expected


def test_shrink_drops_only_large_values():
    value = {"a": "x" * 10, "b": ["y" * 100], "c": b"z" * 100, "d": 5}
    out = base.shrink(value, limit=50)
    assert out["a"] == "x" * 10 and out["d"] == 5
    assert out["b"] == ["<100 characters dropped from the command record>"]
    assert out["c"] == "<100 bytes dropped from the command record>"


def test_a_trimmed_record_keeps_its_wire_form():
    from ironic_python_agent import errors

    result = base.SyncCommandResult("clean.x", {"node": "n" * 10**6}, False,
                                    errors.CleaningError("bad step"))
    wire = result.serialize()
    result.trim()
    assert result.command_params == {} and result.serialize() == wire
    assert isinstance(result.command_error, errors.RESTError)
    assert result.record_bytes == len(json.dumps(wire))
