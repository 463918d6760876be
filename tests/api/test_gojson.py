"""The gateway's request decoder against the texts etcd 3.5.1 answers (observed with curl
on the real binary; tests/conformance/test_conformance_gateway.py replays them live)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from pyetcd.api.etcdhttp.gojson import (
    GoJSONError,
    decode_values,
    go_b64decode,
    go_b64walk,
    parse_message,
)
from pyetcd.pb import rpc_pb2

ERRORS = [
    ('{"key":"%%%"}', "illegal base64 data at input byte 0"),
    ('{"key":"Y$mFk"}', "illegal base64 data at input byte 1"),
    ('{"key":"YQ"}', "illegal base64 data at input byte 0"),
    ('{"key":"YQ="}', "illegal base64 data at input byte 3"),
    ('{"key":5}', "json: cannot unmarshal number into Go value of type []uint8"),
    ('{"key":"YQ==","limit":"abc"}', "invalid character 'a' looking for beginning of value"),
    ("[1]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"),
    ('{"key":"YQ=="', "unexpected EOF"),
    ("nul", "unexpected EOF"),
    ('{"limit":"1.5"}', "json: cannot unmarshal number 1.5 into Go value of type int64"),
    ('{"limit":1e3}', "json: cannot unmarshal number 1e3 into Go value of type int64"),
    ('{"limit":""}', "unexpected end of JSON input"),
    ('{"limit":"-"}', "invalid character ' ' in numeric literal"),
    ('{"limit":"tru"}', "invalid character ' ' in literal true (expecting 'e')"),
    ('{"limit":"01"}', "invalid character '1' after top-level value"),
    ('{"limit":"\\"5\\""}', "invalid character '\\\\' looking for beginning of value"),
    ('{"limit":{}}', "json: cannot unmarshal object into Go value of type int64"),
    ('{"limit":true}', "json: cannot unmarshal bool into Go value of type int64"),
    (
        '{"limit":99999999999999999999}',
        "json: cannot unmarshal number 99999999999999999999 into Go value of type int64",
    ),
    ('{"serializable":"true"}', "json: cannot unmarshal string into Go value of type bool"),
    ('{"serializable":1}', "json: cannot unmarshal number into Go value of type bool"),
    (
        '{"sort_order":"\\u0041SCEND"}',
        'unknown value "\\"\\\\u0041SCEND\\"" for enum etcdserverpb.RangeRequest.SortOrder',
    ),
    (
        '{"sort_order":2.5}',
        "json: cannot unmarshal number 2.5 into Go value of type protoreflect.EnumNumber",
    ),
    ('{"key":"YQ==" , "x": tru}', "invalid character '}' in literal true (expecting 'e')"),
    ('{"key" "YQ=="}', "invalid character '\"' after object key"),
    ('{"a":1 "b":1}', "invalid character '\"' after object key:value pair"),
    ('{"a":[1,]}', "invalid character ']' looking for beginning of value"),
    ('{"a":"\\q"}', "invalid character 'q' in string escape code"),
    ('{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
]


@pytest.mark.parametrize(("body", "text"), ERRORS)
def test_refused_with_go_text(body: str, text: str) -> None:
    with pytest.raises(GoJSONError) as err:
        for raw in decode_values(body.encode()):
            parse_message(raw, rpc_pb2.RangeRequest())
    assert str(err.value) == text


def test_member_id_is_unsigned() -> None:
    with pytest.raises(GoJSONError, match="number -1 into Go value of type uint64"):
        parse_message(b'{"ID":-1}', rpc_pb2.MemberRemoveRequest())


def test_accepted_forms() -> None:
    req = rpc_pb2.RangeRequest()
    body = b'{"key":"YW\\nJj\\r\\n","limit":" 7","keys_only":false,"keysOnly":true,"x":{"y":[]}}'
    parse_message(next(decode_values(body)), req)
    assert (req.key, req.limit, req.keys_only) == (b"abc", 7, True)
    txn = rpc_pb2.TxnRequest()
    parse_message(b'{"success":[{"request_put":{"key":"YQ=="},"request_range":{}}, null]}', txn)
    # jsonpb sets fields in declaration order: the later oneof member wins, as on etcd
    assert txn.success[0].WhichOneof("request") == "request_put"
    assert len(txn.success) == 2


def test_decoder_reads_values_one_by_one() -> None:
    values = list(decode_values(b' {"a":1}{"b":2}\n5 null'))
    assert values == [b'{"a":1}', b'{"b":2}', b"5", b"null"]
    it = decode_values(b'{"a":1} x')
    assert next(it) == b'{"a":1}'
    with pytest.raises(GoJSONError, match="invalid character 'x' looking for beginning of value"):
        next(it)


def test_base64_positions() -> None:
    assert go_b64decode(b"YWJj") == b"abc"
    assert go_b64decode(b"YR==") == b"a"  # Go's StdEncoding is not strict on trailing bits
    for src, pos in [(b"YWJj====", 4), (b"YWJ=x", 4), (b"Y===", 1), (b"YQ==YQ==", 4)]:
        with pytest.raises(GoJSONError, match=f"input byte {pos}$"):
            go_b64decode(src)


def test_base64_fast_path_agrees_with_go_walk() -> None:
    rng = random.Random(20)
    print("seed 20")
    alphabet = b"ABab01+/=\r\n%"

    def outcome(fn: Callable[[bytes], bytes], src: bytes) -> bytes | str:
        try:
            return fn(src)
        except GoJSONError as err:
            return str(err)

    for _ in range(20000):
        src = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert outcome(go_b64decode, src) == outcome(go_b64walk, src), src
