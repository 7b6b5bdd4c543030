"""The ClientHello parser: captured hellos, fragmentation, truncation, limits, fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto import clienthello as ch
from sstpd.proto.clienthello import ACME_TLS_1, ClientHello, Incomplete, decode, encode

DATA = Path(__file__).parent / "data" / "clienthello"
NAME = "sstp.example.test"

# file -> (server_name, alpn)
CAPTURED = {
    "openssl-sni-acme": (NAME, (ACME_TLS_1,)),
    "openssl-sni": (NAME, None),
    "openssl-nosni": (None, None),
    "openssl-sni-acme-http": (NAME, (ACME_TLS_1, b"http/1.1")),
    "openssl-tls12-nosni": (None, None),
    "python-sni-acme": (NAME, (ACME_TLS_1,)),
    "python-sni": (NAME, None),
    "python-nosni-acme": (None, (ACME_TLS_1,)),
    "python-nosni": (None, None),
}


def full(data: bytes) -> ClientHello:
    res = decode(data)
    assert isinstance(res, ClientHello), res
    return res


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_captured(name: str) -> None:
    data = (DATA / f"{name}.bin").read_bytes()
    hello = full(data)
    sni, alpn = CAPTURED[name]
    assert hello.server_name == sni
    assert hello.alpn == alpn
    assert hello.only_acme == (alpn == (ACME_TLS_1,))
    # re-encoding gives the same handshake message; the record header may differ only in
    # the legacy record version byte
    again = encode(hello)
    assert again[5:] == data[5:]
    assert full(again) == hello


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_captured_every_truncation_is_incomplete(name: str) -> None:
    data = (DATA / f"{name}.bin").read_bytes()
    for n in range(len(data)):
        res = decode(data[:n])
        assert isinstance(res, Incomplete), n
        assert n < res.need <= len(data)


@pytest.mark.parametrize("name", sorted(CAPTURED))
@pytest.mark.parametrize("fragment", [1, 2, 3, 7, 100])
def test_captured_refragmented(name: str, fragment: int) -> None:
    hello = full((DATA / f"{name}.bin").read_bytes())
    data = encode(hello, fragment)
    assert data.count(b"\x16\x03\x01") >= len(data) // (fragment + 5)
    assert full(data) == hello
    for n in range(0, len(data), 13):
        assert isinstance(decode(data[:n]), Incomplete)


def windows_like() -> ClientHello:
    """What Schannel sends when the VPN profile names the server by IP: no SNI, no ALPN,
    TLS 1.2 and 1.3 offered, a 32-byte session id."""
    return ClientHello(
        random=bytes(range(32)),
        session_id=bytes(range(32, 64)),
        cipher_suites=(0x1302, 0x1301, 0xC02C, 0xC02B, 0xC030, 0xC02F, 0x009F, 0x009E),
        extensions=(
            (0x000A, bytes.fromhex("0008001d00170018001e")),  # supported_groups
            (0x000B, bytes.fromhex("0100")),  # ec_point_formats
            (0x000D, bytes.fromhex("000a040305030804080508060401")),  # signature_algorithms
            (0x0017, b""),  # extended_master_secret
            (0xFF01, b"\x00"),  # renegotiation_info
            (0x002B, bytes.fromhex("0403040303")),  # supported_versions
            (0x0033, bytes.fromhex("0024001d0020") + bytes(32)),  # key_share
        ),
    )


def test_windows_like_without_sni_or_alpn() -> None:
    hello = full(encode(windows_like()))
    assert hello == windows_like()
    assert hello.server_name is None and hello.alpn is None and not hello.only_acme


def test_sni_is_lowercased_and_trailing_dot_dropped() -> None:
    hello = ClientHello(extensions=(ch.server_name_extension("SSTP.Example.TEST."),))
    assert full(encode(hello)).server_name == NAME


def test_no_extensions_block() -> None:
    hello = ClientHello(extensions=None)
    assert full(encode(hello)) == hello
    assert hello.server_name is None and hello.alpn is None


def test_acme_only_when_alone() -> None:
    for names, only in [
        ((ACME_TLS_1,), True),
        ((ACME_TLS_1, b"http/1.1"), False),
        ((b"http/1.1", ACME_TLS_1), False),
        ((b"acme-tls/2",), False),
        ((b"ACME-TLS/1",), False),
    ]:
        hello = full(encode(ClientHello(extensions=(ch.alpn_extension(names),))))
        assert hello.only_acme is only, names


BAD = {
    "not handshake": b"\x17\x03\x03\x00\x05hello",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "sslv2": b"\x80\x2e\x01\x00\x02\x00\x15",
    "record version": b"\x16\x02\x00\x00\x05\x01\x00\x00\x01\x00",
    "empty record": b"\x16\x03\x01\x00\x00",
    "record too long": b"\x16\x03\x01\x40\x01" + bytes(0x4001),
    "server hello": b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_garbage(what: str) -> None:
    with pytest.raises(ParseError):
        decode(BAD[what])


def test_oversized_hello_rejected_from_its_header() -> None:
    # a handshake header announcing 64 KiB: refused before the body arrives
    data = b"\x16\x03\x01\x00\x04\x01\x01\x00\x00"
    with pytest.raises(ParseError, match="larger than"):
        decode(data)


def test_too_many_tiny_records_rejected() -> None:
    big = ClientHello(extensions=((0x1234, bytes(3000)),))
    data = encode(big, 1)
    with pytest.raises(ParseError, match="spans more than"):
        decode(data)


def test_largest_hello_in_big_records_accepted() -> None:
    body_room = ch.MAX_HELLO - 200
    hello = ClientHello(extensions=((0x1234, bytes(body_room)),))
    assert full(encode(hello, 4096)) == hello


def _ext_hello(*exts: tuple[int, bytes]) -> bytes:
    return encode(ClientHello(extensions=exts))


@pytest.mark.parametrize(
    "ext",
    [
        (ch.EXT_ALPN, bytes.fromhex("0000")),  # empty list
        (ch.EXT_ALPN, bytes.fromhex("000100")),  # one empty name
        (ch.EXT_ALPN, bytes.fromhex("0003020a")),  # name longer than the list
        (ch.EXT_ALPN, bytes.fromhex("00020161ff")),  # trailing byte
        (ch.EXT_SERVER_NAME, bytes.fromhex("0003000000")),  # empty host name
        (ch.EXT_SERVER_NAME, bytes.fromhex("00040000ff")),  # truncated
        (ch.EXT_SERVER_NAME, b"\x00\x04\x00\x00\x01\xff"),  # not ASCII
    ],
)
def test_bad_extensions(ext: tuple[int, bytes]) -> None:
    with pytest.raises(ParseError):
        decode(_ext_hello(ext))


def test_duplicate_extension() -> None:
    with pytest.raises(ParseError, match="twice"):
        decode(_ext_hello(ch.alpn_extension([ACME_TLS_1]), ch.alpn_extension([ACME_TLS_1])))


def test_two_host_names() -> None:
    one = ch.server_name_extension("a.test")[1][2:]
    with pytest.raises(ParseError, match="two host names"):
        decode(_ext_hello((0, len(one * 2).to_bytes(2, "big") + one * 2)))


def test_huge_alpn_entry() -> None:
    # 255-byte names fill the list: accepted, but none is acme-tls/1
    names = [bytes([65 + i]) * 255 for i in range(40)]
    hello = full(_ext_hello(ch.alpn_extension(names)))
    assert hello.alpn is not None and len(hello.alpn) == 40 and not hello.only_acme


# ---------------------------------------------------------------------------------------
# property tests

names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)
hellos = st.builds(
    ClientHello,
    legacy_version=st.sampled_from([0x0301, 0x0302, 0x0303]),
    random=st.binary(min_size=32, max_size=32),
    session_id=st.binary(max_size=32),
    cipher_suites=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40).map(tuple),
    compression_methods=st.binary(min_size=1, max_size=3),
    extensions=st.one_of(
        st.none(),
        st.tuples(
            st.one_of(st.none(), names.map(ch.server_name_extension)),
            st.one_of(
                st.none(),
                st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=5).map(
                    ch.alpn_extension
                ),
            ),
            st.dictionaries(st.integers(17, 0xFFFF), st.binary(max_size=50), max_size=5),
        ).map(lambda t: tuple(e for e in t[:2] if e is not None) + tuple(t[2].items())),
    ),
)


@given(hellos, st.integers(1, 300))
@settings(max_examples=300)
def test_roundtrip(hello: ClientHello, fragment: int) -> None:
    data = encode(hello, fragment)
    if len(data) > ch.MAX_INPUT:
        with pytest.raises(ParseError):
            decode(data)
        return
    assert decode(data) == hello
    cut = len(data) // 2
    assert isinstance(decode(data[:cut]), Incomplete)


@given(st.binary(max_size=600))
@settings(max_examples=1000)
def test_fuzz_never_crashes(data: bytes) -> None:
    try:
        res = decode(data)
    except ParseError:
        return
    if isinstance(res, Incomplete):
        assert res.need > len(data)


@given(hellos, st.data())
@settings(max_examples=300)
def test_fuzz_mutations(hello: ClientHello, data: st.DataObject) -> None:
    raw = bytearray(encode(hello))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        res = decode(bytes(raw))
    except ParseError:
        return
    if isinstance(res, ClientHello):
        _ = res.server_name, res.alpn, res.only_acme  # never raise once decoded
