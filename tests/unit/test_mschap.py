"""MD4, DES and the RFC 2759 / RFC 3079 computations against published vectors."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto import mschap

# RFC 2759 §9.2 and RFC 3079 §3.5.3 (docs/protocol/ppp.md §5)
USER = "User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
CHALLENGE_HASH = bytes.fromhex("D02E4386BCE91226")
NT_HASH = bytes.fromhex("44EBBA8D5312B8D611474411F56989AE")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
HASH_HASH = bytes.fromhex("41C00C584BD2D91C4017A2A12FA59F3F")
AUTH_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"
MASTER_KEY = bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
SERVER_SEND_KEY = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")
SERVER_RECEIVE_KEY = bytes.fromhex("D5F0E9521E3EA9589645E86051C82226")
HLAK = bytes.fromhex("D5F0E9521E3EA9589645E86051C822268B7CDC149B993A1BA118CB153F56DCCB")

# RFC 1320 Appendix A.5
MD4_VECTORS = [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "043f8582f241db351ce627e153e7f0e4",
    ),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
]


@pytest.mark.parametrize(("data", "digest"), MD4_VECTORS)
def test_md4_rfc1320_vectors(data: bytes, digest: str) -> None:
    assert mschap.md4(data).hex() == digest


@pytest.mark.parametrize("length", [55, 56, 57, 63, 64, 65, 119, 120, 128])
def test_md4_padding_boundaries_are_consistent(length: int) -> None:
    # each length crosses a padding edge; digest must differ from its neighbour's
    assert mschap.md4(b"x" * length) != mschap.md4(b"x" * (length + 1))
    assert len(mschap.md4(b"x" * length)) == 16


DES_IMPLEMENTATIONS = {
    "library": mschap.des_encrypt_block,
    "pure": mschap.des_encrypt_block_pure,
}


@pytest.mark.parametrize("impl", DES_IMPLEMENTATIONS)
def test_des_known_vectors(impl: str) -> None:
    des = DES_IMPLEMENTATIONS[impl]
    # the classic worked example (key 133457799BBCDFF1) and FIPS 81's "Now is t"
    key = bytes.fromhex("133457799BBCDFF1")
    assert des(key, bytes.fromhex("0123456789ABCDEF")) == bytes.fromhex("85E813540F0AB405")
    assert des(bytes.fromhex("0123456789abcdef"), b"Now is t") == bytes.fromhex("3fa40e8a984d4815")
    with pytest.raises(ValueError):
        des(b"\x00" * 9, b"\x00" * 8)
    with pytest.raises(ValueError):
        des(b"\x00" * 8, b"\x00" * 7)


def test_des_comes_from_cryptography_here() -> None:
    # pyproject requires cryptography>=41, which has TripleDES: the fast path must be live
    assert mschap.DES_IMPLEMENTATION == "cryptography"


def test_des_library_probe_gives_no_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encrypt = mschap._make_des_library()
        assert encrypt is not None
        encrypt(b"\x01" * 8, b"\x00" * 8)


def test_pure_python_fallback_when_cryptography_lacks_des(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mschap, "_load_triple_des", lambda: None)
    assert mschap._make_des_library() is None
    monkeypatch.setattr(mschap, "_des_library", None)
    # the whole RFC 2759 §9.2 computation through the fallback
    got = mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_HASH)
    assert got == NT_RESPONSE


def test_nt_response_rfc2759_through_the_library() -> None:
    assert mschap._des_library is not None
    got = mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_HASH)
    assert got == NT_RESPONSE


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=7, max_size=8), block=st.binary(min_size=8, max_size=8))
def test_des_implementations_agree(key: bytes, block: bytes) -> None:
    assert mschap.des_encrypt_block(key, block) == mschap.des_encrypt_block_pure(key, block)


def test_des_expand_key_spreads_seven_bit_groups() -> None:
    assert mschap.expand_des_key(b"\xff" * 7) == b"\xfe" * 8
    assert mschap.expand_des_key(b"\x00" * 7) == b"\x00" * 8
    assert mschap.expand_des_key(bytes.fromhex("80000000000001")) == bytes.fromhex(
        "8000000000000002"
    )
    with pytest.raises(ValueError):
        mschap.expand_des_key(b"\x00" * 8)


def test_nt_password_hash() -> None:
    assert mschap.nt_password_hash(PASSWORD) == NT_HASH


def test_password_hash_hash() -> None:
    assert mschap.password_hash_hash(NT_HASH) == HASH_HASH


def test_challenge_hash() -> None:
    assert mschap.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER) == CHALLENGE_HASH


def test_generate_nt_response() -> None:
    assert mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_HASH) == NT_RESPONSE


def test_domain_prefix_is_not_hashed() -> None:
    assert mschap.strip_domain("CORP\\User") == "User"
    assert mschap.strip_domain("User") == "User"
    got = mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, "CORP\\User", NT_HASH)
    assert got == NT_RESPONSE


def test_authenticator_response() -> None:
    got = mschap.authenticator_response(NT_HASH, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER)
    assert got == AUTH_RESPONSE


def test_master_key() -> None:
    assert mschap.master_key(NT_HASH, NT_RESPONSE) == MASTER_KEY


def test_send_start_key_as_server_rfc3079() -> None:
    key = mschap.asymmetric_start_key(MASTER_KEY, 16, is_send=True, is_server=True)
    assert key == SERVER_SEND_KEY


def test_derived_master_send_and_receive_keys() -> None:
    def key(send: bool, server: bool) -> bytes:
        return mschap.asymmetric_start_key(MASTER_KEY, 16, is_send=send, is_server=server)

    assert key(send=False, server=True) == SERVER_RECEIVE_KEY
    # the client's send key is the server's receive key and vice versa
    assert key(send=True, server=False) == SERVER_RECEIVE_KEY
    assert key(send=False, server=False) == SERVER_SEND_KEY
    assert (
        mschap.asymmetric_start_key(MASTER_KEY, 8, is_send=True, is_server=True)
        == (SERVER_SEND_KEY[:8])
    )


def test_sstp_hlak() -> None:
    assert mschap.hlak(NT_HASH, NT_RESPONSE) == HLAK
    assert len(HLAK) == 32


def test_non_ascii_password_uses_utf16le() -> None:
    assert mschap.nt_password_hash("pässwörd") == mschap.md4("pässwörd".encode("utf-16-le"))
