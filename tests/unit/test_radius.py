"""RADIUS codec: the docs/protocol/radius.md §2/§4 vectors, authenticators, fuzzed decoding."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto import aaa, radius
from sstpd.proto.ppp.auth import MSCHAPV2, PAP, VerifyRequest
from sstpd.proto.radius import Attr, Code, Ms, RadiusPacket, crypto

SECRET = b"testing123"
REQ_AUTH = bytes(range(16))
SEND_VALUE = bytes.fromhex("8001222F78911E81BC02D486A8A0A785432F23E948690CF7B68255E9483CDB57BB05")
RECV_VALUE = bytes.fromhex("8002079ECED7BE05A21B6A76B65390A2FA26897891980EA648FB09E7E96FEF919A30")
SEND_KEY = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")
RECV_KEY = bytes.fromhex("D5F0E9521E3EA9589645E86051C82226")
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
CHAP_REQ = VerifyRequest(
    MSCHAPV2,
    "User",
    "User",
    identifier=0x42,
    authenticator_challenge=AUTH_CHALLENGE,
    peer_challenge=PEER_CHALLENGE,
    nt_response=NT_RESPONSE,
)
PAP_REQ = VerifyRequest(PAP, "alice", "alice", password="pw")


def test_mppe_key_vector_decrypts() -> None:
    assert radius.salt_decrypt(SEND_VALUE, SECRET, REQ_AUTH) == SEND_KEY
    assert radius.salt_decrypt(RECV_VALUE, SECRET, REQ_AUTH) == RECV_KEY


def test_mppe_key_vector_encrypts() -> None:
    assert radius.salt_encrypt(SEND_KEY, b"\x80\x01", SECRET, REQ_AUTH) == SEND_VALUE
    assert radius.salt_encrypt(RECV_KEY, b"\x80\x02", SECRET, REQ_AUTH) == RECV_VALUE


@pytest.mark.parametrize("bad", [b"", SEND_VALUE[:-1], b"\x00\x01" + SEND_VALUE[2:]])
def test_malformed_mppe_value_is_none(bad: bytes) -> None:
    assert radius.salt_decrypt(bad, SECRET, REQ_AUTH) is None


def test_mschapv2_vsas_match_pyrad_vector() -> None:
    pkt, data = aaa.access_request(
        CHAP_REQ, identifier=1, authenticator=REQ_AUTH, secret=SECRET, nas=aaa.NasInfo()
    )
    assert (
        bytes.fromhex("1a1800000137 0b12 5b5d7c7d7b3f2f3e3c2c602132262628".replace(" ", "")) in data
    )
    assert (
        bytes.fromhex(
            "1a3a00000137193442 00 21402324255e262a28295f2b3a337c7e 0000000000000000"
            " 82309ecd8d708b5ea08faa3981cd83544233114a3d85d6df".replace(" ", "")
        )
        in data
    )
    assert pkt.attributes[0][0] == Attr.MESSAGE_AUTHENTICATOR  # first (BlastRADIUS)


@given(st.binary(max_size=128))
def test_user_password_round_trip(pw: bytes) -> None:
    enc = radius.encrypt_password(pw, SECRET, REQ_AUTH)
    assert len(enc) % 16 == 0 and 16 <= len(enc) <= 128
    assert radius.decrypt_password(enc, SECRET, REQ_AUTH) == pw.rstrip(b"\x00")


def accept(*, keys: bool = True, message_auth: bool = True, ident: int = 0x42) -> bytes:
    ans = RadiusPacket(Code.ACCESS_ACCEPT, 1)
    ans.add_ms(Ms.CHAP2_SUCCESS, bytes([ident]) + b"S=407A5589115FD0D6209F510FE9C04566932CDA56")
    if keys:
        ans.add_ms(Ms.MPPE_SEND_KEY, SEND_VALUE)
        ans.add_ms(Ms.MPPE_RECV_KEY, RECV_VALUE)
    ans.add(Attr.FRAMED_IP_ADDRESS, IPv4Address("10.77.0.99").packed)
    ans.add_int(Attr.SESSION_TIMEOUT, 3600)
    ans.add(Attr.CLASS, b"cls")
    ans.add_str(Attr.REPLY_MESSAGE, "hello")
    return radius.sign_reply(ans, REQ_AUTH, SECRET, message_auth=message_auth)


def check(data: bytes, require: bool = True) -> str:
    return radius.verify_reply(
        data, radius.decode(data), REQ_AUTH, SECRET, require_message_authenticator=require
    )


def test_genuine_accept_gives_hlak_and_grant() -> None:
    data = accept()
    assert check(data) == ""
    verdict, grant = aaa.interpret(CHAP_REQ, radius.decode(data), SECRET, REQ_AUTH)
    assert verdict.success
    assert verdict.hlak == RECV_KEY + SEND_KEY  # docs/protocol/radius.md §5: recv ‖ send
    assert verdict.authenticator_response == "S=407A5589115FD0D6209F510FE9C04566932CDA56"
    assert grant.framed_ip == IPv4Address("10.77.0.99") and grant.session_timeout == 3600
    assert grant.classes == (b"cls",) and grant.reply_message == "hello"


def test_accept_without_mppe_keys_fails() -> None:
    verdict, _ = aaa.interpret(CHAP_REQ, radius.decode(accept(keys=False)), SECRET, REQ_AUTH)
    assert not verdict.success and "MS-MPPE" in verdict.reason


def test_success_for_another_identifier_fails() -> None:
    verdict, _ = aaa.interpret(CHAP_REQ, radius.decode(accept(ident=7)), SECRET, REQ_AUTH)
    assert not verdict.success


def test_reject_carries_ms_chap_error_code() -> None:
    rej = RadiusPacket(Code.ACCESS_REJECT, 1)
    rej.add_ms(Ms.CHAP_ERROR, b"\x42E=648 R=0 V=3")
    verdict, _ = aaa.interpret(CHAP_REQ, rej, SECRET, REQ_AUTH)
    assert not verdict.success and verdict.code == 648 and "Access-Reject" in verdict.reason


def test_missing_message_authenticator_dropped_when_required() -> None:
    data = accept(message_auth=False)
    assert check(data) == "no Message-Authenticator"
    assert check(data, require=False) == ""


def test_forged_answers_are_refused() -> None:
    data = bytearray(accept())
    data[-1] ^= 1  # any change breaks the Response Authenticator
    assert check(bytes(data)) == "bad Response Authenticator"
    # a forger who knows MD5 collisions fixes the Response Authenticator but not the HMAC
    pkt = radius.decode(accept())
    pkt.attributes = [
        (t, bytes(16) if t == Attr.MESSAGE_AUTHENTICATOR else v) for t, v in pkt.attributes
    ]
    pkt.authenticator = REQ_AUTH
    pkt.authenticator = crypto._md5(pkt.encode(), SECRET)
    assert check(pkt.encode()) == "bad Message-Authenticator"
    assert (
        radius.verify_reply(
            accept(),
            radius.decode(accept()),
            REQ_AUTH,
            b"wrong",
            require_message_authenticator=True,
        )
        == "bad Response Authenticator"
    )


def test_access_request_message_authenticator_is_checkable() -> None:
    _, data = aaa.access_request(
        VerifyRequest(PAP, "bob", "bob", password="pw"),
        identifier=9,
        authenticator=REQ_AUTH,
        secret=SECRET,
        nas=aaa.NasInfo("nas1", IPv4Address("192.0.2.1")),
        calling_station="198.51.100.7",
    )
    pkt = radius.decode(data)
    mac = pkt.get(Attr.MESSAGE_AUTHENTICATOR)
    zeroed = crypto._zero_message_authenticator(pkt, REQ_AUTH)
    assert mac == crypto._hmac_md5(SECRET, zeroed)
    assert radius.decrypt_password(pkt.get(Attr.USER_PASSWORD) or b"", SECRET, REQ_AUTH) == b"pw"
    assert pkt.get_str(Attr.CALLING_STATION_ID) == "198.51.100.7"
    assert pkt.get_int(Attr.NAS_PORT_TYPE) == 5


def test_accounting_request_and_gigawords() -> None:
    rec = aaa.AcctRecord(
        "sess-1",
        "alice",
        aaa.ACCT_STOP,
        session_time=61,
        input_octets=(5 << 32) + 7,
        output_octets=9,
        framed_ip=IPv4Address("10.77.0.2"),
        classes=(b"c",),
        terminate_cause=radius.TERMINATE_USER_REQUEST,
        delay=3,
    )
    _, data = aaa.accounting_request(rec, identifier=3, secret=SECRET, nas=aaa.NasInfo())
    pkt = radius.decode(data)
    assert radius.verify_request(data, pkt, SECRET)
    assert not radius.verify_request(data, pkt, b"other")
    assert pkt.get_int(Attr.ACCT_INPUT_OCTETS) == 7
    assert pkt.get_int(Attr.ACCT_INPUT_GIGAWORDS) == 5
    assert pkt.get_int(Attr.ACCT_TERMINATE_CAUSE) == 1
    assert pkt.get_int(Attr.ACCT_DELAY_TIME) == 3
    assert pkt.get(Attr.TUNNEL_TYPE) == aaa.TUNNEL_TYPE_SSTP
    assert pkt.get(Attr.CLASS) == b"c"


attrs = st.lists(st.tuples(st.integers(1, 255), st.binary(min_size=1, max_size=253)), max_size=12)


@given(st.integers(0, 255), st.integers(0, 255), st.binary(min_size=16, max_size=16), attrs)
def test_encode_decode_round_trip(code: int, ident: int, auth: bytes, a: list) -> None:  # type: ignore[type-arg]
    pkt = RadiusPacket(code, ident, auth, list(a))
    data = pkt.encode()
    if len(data) <= radius.MAX_PACKET:
        assert radius.decode(data) == pkt


@given(st.binary(max_size=600))
def test_decoder_fuzz_raises_only_parse_error(data: bytes) -> None:
    try:
        pkt = radius.decode(data)
    except ParseError:
        return
    radius.ms_attributes(pkt.attributes)
    radius.verify_reply(data, pkt, REQ_AUTH, SECRET, require_message_authenticator=True)
    aaa.interpret(CHAP_REQ, pkt, SECRET, REQ_AUTH)


def test_huge_or_short_packets_rejected() -> None:
    with pytest.raises(ParseError):
        radius.decode(b"\x02\x01\x00\x14")
    with pytest.raises(ParseError):
        radius.decode(b"\x02\x01\x10\x01" + bytes(16) + bytes(4077))
    with pytest.raises(ParseError):
        radius.decode(b"\x02\x01\x00\x16" + bytes(16) + b"\x01\x01")


def test_accounting_on_off_carry_no_session_data() -> None:
    rec = aaa.AcctRecord("boot-nas", "", aaa.ACCT_ON)
    _, data = aaa.accounting_request(rec, identifier=1, secret=SECRET, nas=aaa.NasInfo("n"))
    pkt = radius.decode(data)
    assert radius.verify_request(data, pkt, SECRET)
    assert pkt.get_int(Attr.ACCT_STATUS_TYPE) == 7 and pkt.get_str(Attr.NAS_IDENTIFIER) == "n"
    assert pkt.get(Attr.USER_NAME) is None and pkt.get(Attr.ACCT_INPUT_OCTETS) is None


# ---------------------------------------------------------------- IPv6 (RFC 3162)


def test_framed_ipv6_prefix_encoding_is_freeradius_short_form() -> None:
    # FreeRADIUS (dictionary.rfc3162 "ipv6prefix") and RFC 8044 §3.10: as many prefix
    # bytes as the length needs
    assert radius.encode_ipv6_prefix(IPv6Network("2001:db8:1:5::/64")).hex() == (
        "0040" + "20010db800010005"
    )
    assert radius.encode_ipv6_prefix(IPv6Network("::/0")) == b"\x00\x00"
    assert radius.encode_ipv6_prefix(IPv6Network("2001:db8::/33")).hex() == "002120010db800"


def test_framed_ipv6_prefix_reads_pyrads_full_form() -> None:
    # pyrad 2.6 tools.EncodeIPv6Prefix("2001:db8:1:5::/64") sends all 16 bytes
    full = bytes.fromhex("004020010db8000100050000000000000000")
    assert radius.decode_ipv6_prefix(full) == IPv6Network("2001:db8:1:5::/64")


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00",
        b"\x01\x40" + bytes(8),  # reserved byte not zero
        b"\x00\x81" + bytes(16),  # longer than 128
        b"\x00\x40" + bytes(7),  # fewer bytes than /64 needs
        b"\x00\x40" + bytes(17),  # more than 16 bytes
        b"\x00\x40" + bytes.fromhex("20010db800010005") + b"\x01",  # host bits set
    ],
)
def test_malformed_framed_ipv6_prefix_is_none(bad: bytes) -> None:
    assert radius.decode_ipv6_prefix(bad) is None


@given(st.integers(0, 128), st.integers(0, (1 << 128) - 1))
def test_framed_ipv6_prefix_round_trip(length: int, bits: int) -> None:
    prefix = IPv6Network((bits, length), strict=False)
    value = radius.encode_ipv6_prefix(prefix)
    assert 2 <= len(value) <= 18
    assert radius.decode_ipv6_prefix(value) == prefix
    # and the same value padded to the full 16 bytes (pyrad's form) reads the same
    assert radius.decode_ipv6_prefix(value + bytes(18 - len(value))) == prefix


@given(st.binary(max_size=20))
def test_framed_ipv6_prefix_decoder_fuzz(value: bytes) -> None:
    prefix = radius.decode_ipv6_prefix(value)
    if prefix is not None:
        assert radius.decode_ipv6_prefix(radius.encode_ipv6_prefix(prefix)) == prefix


def test_accept_grants_framed_ipv6_prefix() -> None:
    ans = RadiusPacket(Code.ACCESS_ACCEPT, 1)
    ans.add(Attr.FRAMED_IPV6_PREFIX, radius.encode_ipv6_prefix(IPv6Network("2001:db8:0:7::/64")))
    ans.add(Attr.FRAMED_IPV6_PREFIX, radius.encode_ipv6_prefix(IPv6Network("2001:db8:0:8::/64")))
    verdict, grant = aaa.interpret(PAP_REQ, ans, SECRET, REQ_AUTH)
    assert verdict.success
    assert grant.framed_ipv6_prefix == IPv6Network("2001:db8:0:7::/64")  # the first
    assert not grant.framed_ipv6_malformed


def test_accept_with_malformed_framed_ipv6_prefix_says_so() -> None:
    ans = RadiusPacket(Code.ACCESS_ACCEPT, 1)
    ans.add(Attr.FRAMED_IPV6_PREFIX, b"\x00\x40\x20\x01")
    _, grant = aaa.interpret(PAP_REQ, ans, SECRET, REQ_AUTH)
    assert grant.framed_ipv6_prefix is None and grant.framed_ipv6_malformed
    _, plain = aaa.interpret(PAP_REQ, RadiusPacket(Code.ACCESS_ACCEPT, 1), SECRET, REQ_AUTH)
    assert plain.framed_ipv6_prefix is None and not plain.framed_ipv6_malformed


def test_accounting_carries_framed_ipv6_prefix_and_interface_id() -> None:
    rec = aaa.AcctRecord(
        "sess-6",
        "alice",
        aaa.ACCT_INTERIM,
        framed_ipv6_prefix=IPv6Network("2001:db8:0:7::/64"),
        framed_interface_id=bytes.fromhex("0211223344556677"),
    )
    _, data = aaa.accounting_request(rec, identifier=4, secret=SECRET, nas=aaa.NasInfo())
    pkt = radius.decode(data)
    assert radius.verify_request(data, pkt, SECRET)
    value = pkt.get(Attr.FRAMED_IPV6_PREFIX)
    assert value is not None
    assert radius.decode_ipv6_prefix(value) == IPv6Network("2001:db8:0:7::/64")
    assert pkt.get(Attr.FRAMED_INTERFACE_ID) == bytes.fromhex("0211223344556677")
    # IPv4-only session: neither attribute
    _, data4 = aaa.accounting_request(
        aaa.AcctRecord("s", "bob", aaa.ACCT_START), identifier=5, secret=SECRET, nas=aaa.NasInfo()
    )
    pkt4 = radius.decode(data4)
    assert pkt4.get(Attr.FRAMED_IPV6_PREFIX) is None and pkt4.get(Attr.FRAMED_INTERFACE_ID) is None
