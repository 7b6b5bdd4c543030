"""sstpd.users: parsing with line numbers, atomic saves, add/delete keeping comments."""

from __future__ import annotations

import os
import stat
from ipaddress import IPv4Address, IPv6Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.errors import ConfigError
from sstpd.users import User, add_user, delete_user, load_users, make_user, save_users

CLIENT_PASS_NT = "44ebba8d5312b8d611474411f56989ae"  # NtPasswordHash("clientPass"), RFC 2759


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "users"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# users\n\n"
        f"alice:nt:{CLIENT_PASS_NT}\n"
        f"  bob@example.com:nt:{CLIENT_PASS_NT.upper()}:10.77.0.20  \r\n",
    )
    users = load_users(path)
    assert list(users) == ["alice", "bob@example.com"]
    assert users["alice"] == User("alice", bytes.fromhex(CLIENT_PASS_NT), None)
    assert users["bob@example.com"].address == IPv4Address("10.77.0.20")


def test_nt_hash_of_client_pass(tmp_path: Path) -> None:
    path = str(tmp_path / "users")
    user = add_user(path, "User", password="clientPass")
    assert user.nt_hash.hex().upper() == "44EBBA8D5312B8D611474411F56989AE"
    assert load_users(path)["User"] == user
    assert f"User:nt:{CLIENT_PASS_NT}\n" in Path(path).read_text()
    assert "clientPass" not in Path(path).read_text()


def test_repr_hides_the_hash() -> None:
    user = User("a", bytes.fromhex(CLIENT_PASS_NT), None)
    assert CLIENT_PASS_NT not in repr(user) and "hidden" in repr(user)


EXPECTED = "expected name:nt:<32 hex digits>[:<IPv4 address>[:<IPv6 /64>]]"
BAD_LINES = [
    ("alice", EXPECTED),
    ("alice:nt", EXPECTED),
    (
        f"alice:nt:{CLIENT_PASS_NT}:10.0.0.1:x",
        "'x' is not an IPv6 prefix (a /64 such as 2001:db8:1:2::/64)",
    ),
    (
        f"alice:nt:{CLIENT_PASS_NT}::2001:db8::1/64",
        "'2001:db8::1/64' is not an IPv6 prefix (a /64 such as 2001:db8:1:2::/64)",
    ),
    (f"alice:nt:{CLIENT_PASS_NT}::2001:db8::/56", "2001:db8::/56: a static IPv6 prefix is a /64"),
    (
        f"alice:nt:{CLIENT_PASS_NT}:2001:db8:0:1::/64",
        "'2001:db8:0:1::/64': an IPv6 prefix goes in the fifth field"
        " (leave the IPv4 one empty: name:nt:<hash>::<prefix>)",
    ),
    (f":nt:{CLIENT_PASS_NT}", "a user name must be 1-64 characters"),
    ("a" * 65 + f":nt:{CLIENT_PASS_NT}", "a user name must be 1-64 characters"),
    (f"al ice:nt:{CLIENT_PASS_NT}", "a user name must be printable, without ':' or white space"),
    (f"al\x07ice:nt:{CLIENT_PASS_NT}", "a user name must be printable, without ':' or white space"),
    (f"alice:md5:{CLIENT_PASS_NT}", "unknown hash type 'md5' (only 'nt' is supported)"),
    ("alice:nt:1234", "the NT hash must be 32 hex digits"),
    ("alice:nt:" + "g" * 32, "the NT hash must be 32 hex digits"),
    (f"alice:nt:{CLIENT_PASS_NT}:10.0.0.256", "'10.0.0.256' is not an IPv4 address"),
    (f"alice:nt:{CLIENT_PASS_NT}:", "'' is not an IPv4 address"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = write(tmp_path, f"# header\nok:nt:{CLIENT_PASS_NT}\n\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_users(path)
    assert str(info.value) == f"{path}:4: {reason}"
    assert info.value.line == 4 and info.value.file == path


def test_duplicate_user(tmp_path: Path) -> None:
    path = write(tmp_path, f"a:nt:{CLIENT_PASS_NT}\nb:nt:{CLIENT_PASS_NT}\na:nt:{'0' * 32}\n")
    with pytest.raises(ConfigError) as info:
        load_users(path)
    assert str(info.value) == f"{path}:3: a: duplicate user (first defined on line 1)"


def test_duplicate_static_address(tmp_path: Path) -> None:
    path = write(tmp_path, f"a:nt:{CLIENT_PASS_NT}:10.0.0.5\nb:nt:{CLIENT_PASS_NT}:10.0.0.5\n")
    with pytest.raises(ConfigError) as info:
        load_users(path)
    assert str(info.value) == f"{path}:2: b: address 10.0.0.5 is already given to 'a'"


def test_static_ipv6_prefix_with_and_without_an_address(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"a:nt:{CLIENT_PASS_NT}:10.0.0.5:2001:db8:0:5::/64\nb:nt:{CLIENT_PASS_NT}::2001:db8:0:6::/64\n",
    )
    users = load_users(path)
    assert users["a"].address == IPv4Address("10.0.0.5")
    assert users["a"].ipv6_prefix == IPv6Network("2001:db8:0:5::/64")
    assert users["b"].address is None
    assert users["b"].ipv6_prefix == IPv6Network("2001:db8:0:6::/64")
    assert users["b"].to_line() == f"b:nt:{CLIENT_PASS_NT}::2001:db8:0:6::/64"
    save_users(path, users)
    assert load_users(path) == users
    add_user(path, "c", nt_hash=CLIENT_PASS_NT, ipv6_prefix="2001:db8:0:7::/64")
    assert load_users(path)["c"].ipv6_prefix == IPv6Network("2001:db8:0:7::/64")
    with pytest.raises(ValueError, match="prefix 2001:db8:0:5::/64 is already given to 'a'"):
        add_user(path, "d", nt_hash=CLIENT_PASS_NT, ipv6_prefix="2001:db8:0:5::/64")


def test_duplicate_static_prefix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"a:nt:{CLIENT_PASS_NT}::2001:db8:0:5::/64\nb:nt:{CLIENT_PASS_NT}::2001:db8:0:5::/64\n",
    )
    with pytest.raises(ConfigError) as info:
        load_users(path)
    assert str(info.value) == f"{path}:2: b: prefix 2001:db8:0:5::/64 is already given to 'a'"


def test_missing_file_and_bad_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_users(str(tmp_path / "none"))
    path = tmp_path / "users"
    path.write_bytes(b"# a\n\xff\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_users(str(path))
    assert str(info.value) == f"{path}:2: not valid UTF-8"


def test_save_round_trip_and_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "users")
    users = {
        "a": User("a", bytes(16), None),
        "b": User("b", bytes.fromhex(CLIENT_PASS_NT), IPv4Address("10.1.2.3")),
    }
    save_users(path, users)
    assert load_users(path) == users
    assert mode(path) == 0o600
    assert os.listdir(tmp_path / "sub") == ["users"]  # no temporary file left behind
    save_users(path, list(users.values())[:1])
    assert list(load_users(path)) == ["a"]
    assert mode(path) == 0o600


def test_save_keeps_existing_mode(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    os.chmod(path, 0o640)
    save_users(path, [User("a", bytes(16), None)])
    assert mode(path) == 0o640
    add_user(path, "b", nt_hash=bytes(16))
    assert mode(path) == 0o640


def test_save_is_atomic_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, f"a:nt:{CLIENT_PASS_NT}\n")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        add_user(path, "b", password="x")
    monkeypatch.undo()
    assert list(load_users(path)) == ["a"]
    assert os.listdir(tmp_path) == ["users"]


def test_add_creates_replaces_and_keeps_comments(tmp_path: Path) -> None:
    path = str(tmp_path / "users")
    add_user(path, "a", password="one")
    assert mode(path) == 0o600
    with open(path, "a") as f:
        f.write("# admin note\n")
    add_user(path, "b", nt_hash=CLIENT_PASS_NT.upper(), address="10.0.0.9")
    add_user(path, "a", nt_hash="00:" * 15 + "00")
    users = load_users(path)
    assert users["a"].nt_hash == bytes(16)
    assert users["b"] == User("b", bytes.fromhex(CLIENT_PASS_NT), IPv4Address("10.0.0.9"))
    text = Path(path).read_text()
    assert "# admin note\n" in text
    assert text.index("a:nt:") < text.index("# admin note") < text.index("b:nt:")


def test_add_rejects_bad_arguments(tmp_path: Path) -> None:
    path = str(tmp_path / "users")
    with pytest.raises(ValueError, match="exactly one"):
        add_user(path, "a")
    with pytest.raises(ValueError, match="exactly one"):
        add_user(path, "a", password="x", nt_hash=bytes(16))
    with pytest.raises(ValueError, match="user name"):
        add_user(path, "a:b", password="x")
    with pytest.raises(ValueError, match="32 hex digits"):
        add_user(path, "a", nt_hash="abc")
    with pytest.raises(ValueError, match="16 bytes"):
        add_user(path, "a", nt_hash=b"abc")
    with pytest.raises(ValueError, match="not an IPv4 address"):
        add_user(path, "a", password="x", address="nope")
    assert not os.path.exists(path)
    add_user(path, "a", password="x", address="10.0.0.1")
    with pytest.raises(ValueError, match="already given to 'a'"):
        add_user(path, "b", password="x", address="10.0.0.1")
    add_user(path, "a", password="y", address="10.0.0.1")  # same user: fine


def test_delete(tmp_path: Path) -> None:
    path = str(tmp_path / "users")
    assert delete_user(path, "a") is False
    add_user(path, "a", password="x")
    add_user(path, "b", password="x")
    assert delete_user(path, "a") is True
    assert delete_user(path, "a") is False
    assert list(load_users(path)) == ["b"]
    assert mode(path) == 0o600


def test_make_user_accepts_bytes_and_hex() -> None:
    assert make_user("a", nt_hash=bytes(16)) == make_user("a", nt_hash="0" * 32)


LINE_CHARS = st.sampled_from([*"abc:#nt01 \t\x00\x07é\u2028", CLIENT_PASS_NT, ":nt:", "10.0.0.1"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(max_size=60), st.lists(LINE_CHARS, max_size=8).map("".join)), max_size=6
    )
)
def test_fuzz_only_config_error_escapes(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "users"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    path.chmod(0o600)
    try:
        users = load_users(str(path))
    except ConfigError as e:
        assert e.file == str(path)
        return
    # whatever parsed survives a save + load
    save_users(str(path), users)
    assert load_users(str(path)) == users


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o660])
def test_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, f"a:nt:{CLIENT_PASS_NT}\n")
    os.chmod(path, mode)
    with pytest.raises(ConfigError) as info:
        load_users(path)
    assert str(info.value) == (
        f"{path}: mode {mode:04o} lets other users read it; it must be 0600 (or 0640 with "
        f"the daemon's group): chmod 600 {path}"
    )


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640])
def test_private_or_group_read_with_our_group_is_accepted(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, f"a:nt:{CLIENT_PASS_NT}\n")
    os.chmod(path, mode)  # the test's file has our group
    assert list(load_users(path)) == ["a"]


def test_group_read_with_a_foreign_group_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"a:nt:{CLIENT_PASS_NT}\n")
    foreign = next(g for g in range(1, 70000) if g != os.getegid() and g not in os.getgroups())
    os.chown(path, -1, foreign)
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="mode 0640 lets other users read it"):
        load_users(path)


def test_add_user_tightens_a_loose_mode_and_keeps_a_good_one(tmp_path: Path) -> None:
    path = write(tmp_path, f"a:nt:{CLIENT_PASS_NT}\n")
    os.chmod(path, 0o644)
    add_user(path, "b", password="x")
    assert os.stat(path).st_mode & 0o777 == 0o600
    os.chmod(path, 0o640)
    add_user(path, "c", password="x")
    assert os.stat(path).st_mode & 0o777 == 0o640
    os.chmod(path, 0o666)
    delete_user(path, "c")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert list(load_users(path)) == ["a", "b"]
