"""Request classification and head rewriting for sharing port 443 with a web site."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.errors import HttpError
from sstpd.proto.webfront import SSTP, WEB, classify, head_length, rewrite_head

SSTP_LINE = b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n"


@pytest.mark.parametrize(
    "data,expected",
    [
        (SSTP_LINE, SSTP),
        (SSTP_LINE.replace(b"/ HTTP", b"/?tenantid=x HTTP"), SSTP),
        (SSTP_LINE.lower().replace(b"sstp_duplex_post", b"SSTP_DUPLEX_POST"), SSTP),
        (b"GET / HTTP/1.1\r\n", WEB),
        (b"POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n", WEB),
        (b"SSTP_DUPLEX_POST /other/ HTTP/1.1\n", WEB),
        (b"GET / HTTP/1.1", None),
        (b"", None),
    ],
)
def test_classify(data: bytes, expected: str | None) -> None:
    assert classify(data) == expected


def test_classify_byte_at_a_time() -> None:
    for i in range(len(SSTP_LINE)):
        assert classify(SSTP_LINE[:i]) is None
    assert classify(SSTP_LINE) == SSTP


def test_endless_request_line() -> None:
    with pytest.raises(HttpError) as e:
        classify(b"G" * 9000)
    assert e.value.status == 431
    with pytest.raises(HttpError):
        head_length(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000)


def test_head_length() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert head_length(head + b"body") == len(head)
    assert head_length(head[:-1]) is None
    assert head_length(b"GET / HTTP/1.1\nHost: a\n\n") == 24


def test_rewrite_replaces_forged_forwarding_headers() -> None:
    head = (
        b"GET /x HTTP/1.1\r\nHost: www.example.org\r\nX-Forwarded-For: 6.6.6.6\r\n"
        b"forwarded: for=6.6.6.6\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n"
    )
    out = rewrite_head(head, "192.0.2.7", "https")
    assert out == (
        b"GET /x HTTP/1.1\r\nHost: www.example.org\r\nAccept: */*\r\n"
        b"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
        b"Forwarded: for=192.0.2.7;proto=https\r\nConnection: close\r\n\r\n"
    )
    assert b"6.6.6.6" not in out


def test_rewrite_ipv6_forwarded_is_quoted() -> None:
    out = rewrite_head(b"GET / HTTP/1.1\nHost: a\n\n", "2001:db8::1", "http")
    assert b'Forwarded: for="[2001:db8::1]";proto=http\r\n' in out


@given(st.binary(max_size=400))
def test_fuzz(data: bytes) -> None:
    try:
        classify(data)
        head_length(data)
    except HttpError:
        pass
    n = head_length(data[:8000]) if len(data) < 8000 else None
    if n is not None:
        assert rewrite_head(data[:n], "192.0.2.1", "https").endswith(b"\r\n\r\n")
