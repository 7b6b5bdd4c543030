"""HTTP upgrade: request/response parsing and building."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.errors import HttpError, ParseError
from sstpd.proto.sstp.constants import SSTP_PATH
from sstpd.proto.sstp.http import (
    MAX_HEADER_BLOCK,
    Request,
    RequestParser,
    ResponseParser,
    build_error_response,
    build_ok_response,
    build_request,
)

CORR = "{7E3C1D2A-1B2C-4D5E-8F90-A1B2C3D4E5F6}"
REQUEST = build_request("vpn.example.org", CORR)


def test_build_request_exact_bytes() -> None:
    expected = (
        b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n"
        b"Host: vpn.example.org\r\n"
        b"Content-Length: 18446744073709551615\r\n"
        b"SSTPCORRELATIONID: " + CORR.encode() + b"\r\n"
        b"\r\n"
    )
    assert expected == REQUEST


def test_build_responses() -> None:
    assert build_ok_response() == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\nServer: sstpd\r\n\r\n"
    )
    assert build_ok_response("x\r\ny") == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\nServer: xy\r\n\r\n"
    )
    assert build_error_response(404, "Not Found") == (
        b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )


def _parse(data: bytes) -> Request:
    parser = RequestParser()
    req = parser.feed(data)
    assert req is not None
    return req


def test_request_parsed() -> None:
    req = _parse(REQUEST)
    assert req.method == "SSTP_DUPLEX_POST"
    assert req.path == SSTP_PATH and req.version == "HTTP/1.1"
    assert req.correlation_id == CORR and req.host == "vpn.example.org"
    assert req.headers["content-length"] == "18446744073709551615"


def test_request_byte_at_a_time_with_leftover() -> None:
    data = REQUEST + b"\x10\x01\x00\x0e"
    parser = RequestParser()
    results = [parser.feed(data[i : i + 1]) for i in range(len(REQUEST))]
    assert all(r is None for r in results[:-1])
    assert results[-1] is not None and results[-1].correlation_id == CORR
    assert parser.leftover == b""
    for i in range(len(REQUEST), len(data)):
        assert parser.feed(data[i : i + 1]) is None
    assert parser.leftover == b"\x10\x01\x00\x0e"


def test_request_leftover_in_same_chunk() -> None:
    parser = RequestParser()
    assert parser.feed(REQUEST + b"SSTP") is not None
    assert parser.leftover == b"SSTP"


@pytest.mark.parametrize(
    "text",
    [
        REQUEST.replace(b"\r\n", b"\n"),  # bare LF
        REQUEST.replace(b"Host", b"hOsT").replace(b"SSTPCORRELATIONID", b"sstpCorrelationId"),
        REQUEST.replace(b"C84EE0ADCD75}/", b"C84EE0ADCD75}/?tenantid=abc"),
        REQUEST.replace(b"CD49-458b", b"cd49-458B").replace(b"/sra_", b"/SRA_"),
        REQUEST.replace(b"\r\n\r\n", b"\r\n\n"),
    ],
)
def test_request_lenient_variants(text: bytes) -> None:
    req = _parse(text)
    assert req.correlation_id == CORR and req.host == "vpn.example.org"


def test_request_host_optional_correlation_opaque() -> None:
    text = (
        b"SSTP_DUPLEX_POST " + SSTP_PATH.encode() + b" HTTP/1.1\r\n"
        b"SSTPCORRELATIONID: {1A2B-3C-4D-5E6F}\r\n\r\n"
    )
    req = _parse(text)
    assert req.host is None and req.correlation_id == "{1A2B-3C-4D-5E6F}"
    req = _parse(b"SSTP_DUPLEX_POST " + SSTP_PATH.encode() + b" HTTP/1.1\r\n\r\n")
    assert req.correlation_id is None and req.headers == {}


@pytest.mark.parametrize(
    ("text", "status"),
    [
        (REQUEST.replace(b"SSTP_DUPLEX_POST", b"GET"), 405),
        (REQUEST.replace(b"/sra_", b"/xyz_"), 404),
        (REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"), 505),
        (REQUEST.replace(b"HTTP/1.1", b"HTTP/2.0"), 505),
        (REQUEST.replace(b"HTTP/1.1", b"FOO/1.1"), 400),
        (REQUEST.replace(b"SSTP_DUPLEX_POST ", b"SSTP_DUPLEX_POST  "), 400),
        (b"SSTP_DUPLEX_POST\r\n\r\n", 400),
        (REQUEST.replace(b"Host:", b"Host"), 400),
        (REQUEST.replace(b"Host:", b" Host:"), 400),
        (b"\r\n\r\n", 400),
    ],
)
def test_request_refused(text: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        RequestParser().feed(text)
    assert info.value.status == status


def test_request_header_block_limit() -> None:
    parser = RequestParser()
    parser.feed(REQUEST[:-2])  # no end yet
    with pytest.raises(HttpError) as info:
        parser.feed(b"X-Pad: " + b"a" * MAX_HEADER_BLOCK)
    assert info.value.status == 431
    with pytest.raises(HttpError) as info:
        RequestParser().feed(REQUEST[:-2] + b"X-Pad: " + b"a" * MAX_HEADER_BLOCK + b"\r\n\r\n")
    assert info.value.status == 431


def test_request_truncation_needs_more() -> None:
    for cut in range(len(REQUEST)):
        assert RequestParser().feed(REQUEST[:cut]) is None


RESPONSE = build_ok_response()


def test_response_parser() -> None:
    parser = ResponseParser()
    for i in range(len(RESPONSE) - 1):
        assert parser.feed(RESPONSE[i : i + 1]) is None
    assert parser.feed(RESPONSE[-1:]) == 200
    parser = ResponseParser()
    assert parser.feed(RESPONSE + b"\x10\x01") == 200
    assert parser.leftover == b"\x10\x01"
    assert ResponseParser().feed(build_error_response(403, "Forbidden")) == 403
    assert ResponseParser().feed(b"HTTP/1.0 200\n\n") == 200


@pytest.mark.parametrize(
    "text",
    [b"HTTP/1.1 2000 OK\r\n\r\n", b"FTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"],
)
def test_response_malformed(text: bytes) -> None:
    with pytest.raises(ParseError):
        ResponseParser().feed(text)


def test_response_too_large() -> None:
    with pytest.raises(ParseError):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\n" + b"a" * (MAX_HEADER_BLOCK + 1))


@given(st.lists(st.binary(max_size=200), max_size=6))
def test_fuzz_request_parser(chunks: list[bytes]) -> None:
    parser = RequestParser()
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except HttpError as exc:
        assert exc.status in (400, 404, 405, 431, 505)


@given(st.sampled_from([REQUEST, RESPONSE]), st.data())
def test_fuzz_mutated_header_blocks(base: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(base)))
    junk = data.draw(st.binary(max_size=8))
    text = base[:pos] + junk + base[pos:]
    with contextlib.suppress(HttpError):
        RequestParser().feed(text)
    with contextlib.suppress(ParseError):
        ResponseParser().feed(text)


@given(st.lists(st.binary(max_size=200), max_size=6))
def test_fuzz_response_parser(chunks: list[bytes]) -> None:
    parser = ResponseParser()
    try:
        for chunk in chunks:
            status = parser.feed(chunk)
            assert status is None or 0 <= status <= 999
    except ParseError:
        pass
