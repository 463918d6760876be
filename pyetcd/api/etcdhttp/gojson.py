"""Request JSON as etcd's gateway reads it: Go's encoding/json under golang/protobuf's jsonpb.

etcd 3.5's grpc-gateway decodes a request body with a ``json.Decoder`` (one JSON value
per request; a stream's body may hold several) and then ``jsonpb`` (unknown fields
ignored). What a client can observe of that, and this module reproduces:

- syntax errors in Go's words (``invalid character 'x' looking for beginning of value``,
  ``unexpected EOF`` for a truncated body, ``unexpected end of JSON input`` for a
  truncated inner value);
- a field is found by its proto name, then its JSON (camelCase) name, which wins;
  ``null`` leaves a field unset;
- int64/uint64/int32 fields take a number or a quoted number (the quotes are stripped
  and the rest parsed again as JSON); anything else is Go's
  ``json: cannot unmarshal <kind> into Go value of type <type>``;
- bytes are strict padded standard base64 (``illegal base64 data at input byte N``,
  Go's positions; CR and LF are skipped);
- enums by name (``unknown value "\\"X\\"" for enum <full name>``) or by number.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["GoJSONError", "decode_values", "go_b64decode", "go_b64walk", "parse_message"]

_SPACE = b" \t\r\n"
_PRINTABLE = bytes(range(0x20, 0x100))
_CONTROL = re.compile(rb"[\x00-\x1f]")
_MAX_DEPTH = 10000


class GoJSONError(ValueError):
    """A body Go's decoder refuses; the text is Go's."""


# -- Go's scanner ------------------------------------------------------------------------


def _quote_char(c: int) -> str:
    if c == ord("'"):
        return "'\\''"
    if c == ord('"'):
        return "'\"'"
    return "'" + _go_quote(chr(c))[1:-1] + "'"


def _go_quote(s: str) -> str:
    """strconv.Quote: printable characters as they are, the rest escaped."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


class _Scan:
    """Go's JSON scanner over one value starting at ``pos``: finds where it ends."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def fail(self, context: str) -> GoJSONError:
        if self.pos >= len(self.data):
            return GoJSONError("<eof>")
        return GoJSONError(f"invalid character {_quote_char(self.data[self.pos])} {context}")

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def skip_space(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in _SPACE:
            self.pos += 1

    def value(self, depth: int = 0) -> None:
        self.skip_space()
        c = self.peek()
        if c == ord("{"):
            self._object(depth + 1)
        elif c == ord("["):
            self._array(depth + 1)
        elif c == ord('"'):
            self._string()
        elif c == ord("-") or ord("0") <= c <= ord("9"):
            self._number()
        elif c in (ord("t"), ord("f"), ord("n")):
            word = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}[c]
            self.pos += 1
            for expect in word[1:]:
                if self.peek() != expect:
                    raise self.fail(f"in literal {word.decode()} (expecting {_quote_char(expect)})")
                self.pos += 1
        else:
            raise self.fail("looking for beginning of value")

    def _nest(self, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise GoJSONError("exceeded max depth")
        self.pos += 1

    def _object(self, depth: int) -> None:
        self._nest(depth)
        self.skip_space()
        if self.peek() == ord("}"):
            self.pos += 1
            return
        while True:
            self.skip_space()
            if self.peek() != ord('"'):
                raise self.fail("looking for beginning of object key string")
            self._string()
            self.skip_space()
            if self.peek() != ord(":"):
                raise self.fail("after object key")
            self.pos += 1
            self.value(depth)
            self.skip_space()
            c = self.peek()
            if c == ord(","):
                self.pos += 1
            elif c == ord("}"):
                self.pos += 1
                return
            else:
                raise self.fail("after object key:value pair")

    def _array(self, depth: int) -> None:
        self._nest(depth)
        self.skip_space()
        if self.peek() == ord("]"):
            self.pos += 1
            return
        while True:
            self.value(depth)
            self.skip_space()
            c = self.peek()
            if c == ord(","):
                self.pos += 1
            elif c == ord("]"):
                self.pos += 1
                return
            else:
                raise self.fail("after array element")

    def _skip_plain(self) -> None:
        # a run of plain characters at once (bodies carry long base64 strings)
        data = self.data
        end = data.find(b'"', self.pos)
        if end < 0:
            end = len(data)
        escape = data.find(b"\\", self.pos, end)
        if escape >= 0:
            end = escape
        if data[self.pos : end].translate(None, _PRINTABLE):  # a control character
            end = _CONTROL.search(data, self.pos, end).start()  # type: ignore[union-attr]
        self.pos = end

    def _string(self) -> None:
        self.pos += 1
        while True:
            self._skip_plain()
            c = self.peek()
            if c == ord('"'):
                self.pos += 1
                return
            if c == ord("\\"):
                self.pos += 1
                e = self.peek()
                if e == ord("u"):
                    self.pos += 1
                    for _ in range(4):
                        h = self.peek()
                        if h < 0 or chr(h) not in "0123456789abcdefABCDEF":
                            raise self.fail("in \\u hexadecimal character escape")
                        self.pos += 1
                    continue
                if e < 0 or chr(e) not in 'bfnrt\\/"':
                    raise self.fail("in string escape code")
            elif c < 0:
                raise self.fail("")
            elif c < 0x20:
                raise self.fail("in string literal")
            self.pos += 1

    def _digits(self) -> int:
        start = self.pos
        while ord("0") <= self.peek() <= ord("9"):
            self.pos += 1
        return self.pos - start

    def _number(self) -> None:
        if self.peek() == ord("-"):
            self.pos += 1
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("in numeric literal")
        if self.peek() == ord("0"):
            self.pos += 1
        else:
            self._digits()
        if self.peek() == ord("."):
            self.pos += 1
            if not self._digits():
                raise self.fail("after decimal point in numeric literal")
        if self.peek() in (ord("e"), ord("E")):
            self.pos += 1
            if self.peek() in (ord("+"), ord("-")):
                self.pos += 1
            if not self._digits():
                raise self.fail("in exponent of numeric literal")


def decode_values(body: bytes) -> Iterator[bytes]:
    """The JSON values of ``body`` one by one, as a Go ``json.Decoder`` reads them.

    Raises GoJSONError at the first value that is malformed (``unexpected EOF`` when
    the body ends inside it); stops quietly at the end of the body.
    """
    pos = 0
    while True:
        while pos < len(body) and body[pos] in _SPACE:
            pos += 1
        if pos >= len(body):
            return
        scan = _Scan(body, pos)
        try:
            scan.value()
        except GoJSONError as err:
            if str(err) == "<eof>":
                raise GoJSONError("unexpected EOF") from None
            raise
        yield body[pos : scan.pos]
        pos = scan.pos


def _check_valid(raw: bytes) -> None:
    """json.Unmarshal's check: exactly one value, with Go's error texts."""
    scan = _Scan(raw, 0)
    try:
        scan.value()
    except GoJSONError as err:
        if str(err) != "<eof>":
            raise
        # Go steps its scanner once more with a space at the end: a number or literal
        # cut short is then an invalid character ' ', anything else a premature end
        try:
            _Scan(raw + b" ", 0).value()
        except GoJSONError as again:
            if str(again) != "<eof>":
                raise again from None
        raise GoJSONError("unexpected end of JSON input") from None
    scan.skip_space()
    if scan.pos < len(raw):
        raise scan.fail("after top-level value")


# -- values, with their raw text ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Value:
    kind: str  # Go's words: object, array, string, number, bool, null
    raw: bytes
    value: Any  # dict[str, _Value] | list[_Value] | str | bool | None (numbers: raw)


def _parse(raw: bytes) -> _Value:
    # ``raw`` is valid JSON (checked by the scanner); keep each value's own text.
    value, _ = _parse_at(raw, 0)
    return value


def _parse_at(data: bytes, pos: int) -> tuple[_Value, int]:
    while data[pos] in _SPACE:
        pos += 1
    start = pos
    scan = _Scan(data, pos)
    c = data[pos]
    if c == ord("{"):
        members: dict[str, _Value] = {}
        pos += 1
        while True:
            while data[pos] in _SPACE or data[pos] == ord(","):
                pos += 1
            if data[pos] == ord("}"):
                return _Value("object", data[start : pos + 1], members), pos + 1
            key, pos = _parse_at(data, pos)
            while data[pos] in _SPACE:
                pos += 1
            member, pos = _parse_at(data, pos + 1)  # past ':'
            members[key.value] = member  # Go's map: the last duplicate wins
    if c == ord("["):
        items: list[_Value] = []
        pos += 1
        while True:
            while data[pos] in _SPACE or data[pos] == ord(","):
                pos += 1
            if data[pos] == ord("]"):
                return _Value("array", data[start : pos + 1], items), pos + 1
            item, pos = _parse_at(data, pos)
            items.append(item)
    scan.value()
    raw = data[start : scan.pos]
    if c == ord('"'):
        text = json.loads(raw.decode("utf-8", errors="replace"))
        # Go turns a lone surrogate escape into U+FFFD
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", errors="replace")
        return _Value("string", raw, text), scan.pos
    if c in (ord("t"), ord("f")):
        return _Value("bool", raw, c == ord("t")), scan.pos
    if c == ord("n"):
        return _Value("null", raw, None), scan.pos
    return _Value("number", raw, raw.decode()), scan.pos


def _type_error(kind: str, go_type: str, literal: str = "") -> GoJSONError:
    value = f"number {literal}" if literal else kind
    return GoJSONError(f"json: cannot unmarshal {value} into Go value of type {go_type}")


# -- base64 (Go's StdEncoding.Decode) ----------------------------------------------------

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64 = {c: i for i, c in enumerate(_ALPHABET)}


def go_b64decode(src: bytes) -> bytes:
    """Decode strict padded standard base64 as Go does, CR and LF skipped.

    Raises GoJSONError ``illegal base64 data at input byte N`` with Go's N.
    """
    plain = src.replace(b"\n", b"").replace(b"\r", b"")
    if len(plain) % 4 == 0 and plain.find(b"=") in (-1, len(plain) - 2, len(plain) - 1):
        try:  # well formed: decoded at C speed; otherwise Go's walk finds the position
            return binascii.a2b_base64(plain, strict_mode=True)
        except binascii.Error:
            pass
    return go_b64walk(src)


def go_b64walk(src: bytes) -> bytes:
    """Go's decoding loop itself, quantum by quantum (see :func:`go_b64decode`)."""
    out = bytearray()
    si = 0
    n = len(src)
    while si < n:
        buf = [0, 0, 0, 0]
        dlen = 4
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return bytes(out)
                raise GoJSONError(f"illegal base64 data at input byte {si - j}")
            c = src[si]
            si += 1
            if c in _B64:
                buf[j] = _B64[c]
                j += 1
                continue
            if c in (0x0A, 0x0D):
                continue
            if c != ord("="):
                raise GoJSONError(f"illegal base64 data at input byte {si - 1}")
            # padding: only after two or three characters of a quantum
            if j in (0, 1):
                raise GoJSONError(f"illegal base64 data at input byte {si - 1}")
            if j == 2:
                while si < n and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == n:
                    raise GoJSONError(f"illegal base64 data at input byte {n}")
                if src[si] != ord("="):
                    raise GoJSONError(f"illegal base64 data at input byte {si - 1}")
                si += 1
            while si < n and src[si] in (0x0A, 0x0D):
                si += 1
            if si < n:
                raise GoJSONError(f"illegal base64 data at input byte {si}")
            dlen = j
            break
        val = buf[0] << 18 | buf[1] << 12 | buf[2] << 6 | buf[3]
        out += val.to_bytes(3, "big")[: dlen - 1]
        if dlen < 4:
            break
    return bytes(out)


# -- jsonpb ------------------------------------------------------------------------------

_INT_TYPES = {
    FieldDescriptor.TYPE_INT64: ("int64", -(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_SINT64: ("int64", -(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_SFIXED64: ("int64", -(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_UINT64: ("uint64", 0, (1 << 64) - 1),
    FieldDescriptor.TYPE_FIXED64: ("uint64", 0, (1 << 64) - 1),
    FieldDescriptor.TYPE_INT32: ("int32", -(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_SINT32: ("int32", -(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_SFIXED32: ("int32", -(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_UINT32: ("uint32", 0, (1 << 32) - 1),
    FieldDescriptor.TYPE_FIXED32: ("uint32", 0, (1 << 32) - 1),
}


def parse_message(raw: bytes, msg: Message) -> None:
    """Fill ``msg`` from one JSON value ``raw`` (one of :func:`decode_values`), as jsonpb.

    Raises GoJSONError with Go's text.
    """
    _check_valid(raw)
    _fill(_parse(raw), msg)


def _fill(v: _Value, msg: Message) -> None:
    if v.kind == "null":
        return
    if v.kind != "object":
        raise _type_error(v.kind, "map[string]json.RawMessage")
    members: dict[str, _Value] = v.value
    desc: Descriptor = msg.DESCRIPTOR
    for fd in desc.fields:
        found = members.get(fd.name)
        if fd.json_name in members:
            found = members[fd.json_name]
        if found is None or found.kind == "null":
            continue
        if fd.is_repeated:
            if found.kind != "array":
                raise _type_error(found.kind, "[]json.RawMessage")
            target = getattr(msg, fd.name)
            for item in found.value:
                if fd.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(item, target.add())
                else:
                    target.append(_scalar(fd, item))
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            sub = getattr(msg, fd.name)
            sub.SetInParent()
            _fill(found, sub)
        else:
            setattr(msg, fd.name, _scalar(fd, found))


def _scalar(fd: FieldDescriptor, v: _Value) -> Any:
    t = fd.type
    if t in _INT_TYPES:
        go_type, lo, hi = _INT_TYPES[t]
        return _integer(_trim_quote(v.raw), go_type, lo, hi)
    if t == FieldDescriptor.TYPE_BOOL:
        if v.kind == "null":
            return False
        if v.kind != "bool":
            raise _type_error(v.kind, "bool")
        return v.value
    if t == FieldDescriptor.TYPE_STRING:
        if v.kind == "null":
            return ""
        if v.kind != "string":
            raise _type_error(v.kind, "string")
        return v.value
    if t == FieldDescriptor.TYPE_BYTES:
        if v.kind == "null":
            return b""
        if v.kind != "string":
            raise _type_error(v.kind, "[]uint8")
        data: str = v.value
        return go_b64decode(data.encode("utf-8", errors="replace"))
    if t == FieldDescriptor.TYPE_ENUM:
        if len(v.raw) >= 2 and v.raw[:1] == b'"' and v.raw[-1:] == b'"':
            value = fd.enum_type.values_by_name.get(v.raw[1:-1].decode("utf-8", "replace"))
            if value is None:
                raw = _go_quote(v.raw.decode("utf-8", "replace"))
                raise GoJSONError(f"unknown value {raw} for enum {fd.enum_type.full_name}")
            return value.number
        return _integer(v.raw, "protoreflect.EnumNumber", -(1 << 31), (1 << 31) - 1)
    raise GoJSONError(f"unsupported field type {t} of {fd.full_name}")


def _trim_quote(raw: bytes) -> bytes:
    if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
        return raw[1:-1]
    return raw


def _integer(raw: bytes, go_type: str, lo: int, hi: int) -> int:
    _check_valid(raw)
    v = _parse(raw)
    if v.kind == "null":
        return 0
    if v.kind != "number":
        raise _type_error(v.kind, go_type)
    literal: str = v.value
    try:
        n = int(literal)
    except ValueError:
        raise _type_error("number", go_type, literal) from None
    if not lo <= n <= hi:
        raise _type_error("number", go_type, literal)
    return n
