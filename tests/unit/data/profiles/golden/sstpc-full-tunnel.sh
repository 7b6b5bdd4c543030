#!/bin/sh
# sstpd client profile for sstpc + pppd (Linux): SSTP to vpn.example.com:443
# Made by sstpd 0.0-test from the server's configuration. No secret: the
# password comes from $SSTP_PASSWORD or is asked. Run as root:
#   sh <this file> [more pppd options, e.g. debug]
set -eu
SSTP_USER=${SSTP_USER:-}
SSTPC_OPTIONS=${SSTPC_OPTIONS:-}
umask 022
# The certificate to trust: CN=vpn.example.com
# SHA-256 5F:73:E9:8F:CC:93:E0:5F:C7:85:6E:DB:A0:05:C4:25:46:AB:C4:B2:DD:23:3A:4D:CE:5A:F0:4D:34:C9:70:CF
CA=/etc/ppp/sstpd/vpn-example-com.crt
mkdir -p "$(dirname "$CA")"
cat > "$CA" <<'SSTPD_CERTIFICATE'
-----BEGIN CERTIFICATE-----
MIIBbDCCARKgAwIBAgIBCzAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA92cG4uZXhh
bXBsZS5jb20wIBcNMjUwMTAxMDAwMDAwWhgPMjEyNTAxMDEwMDAwMDBaMBoxGDAW
BgNVBAMMD3Zwbi5leGFtcGxlLmNvbTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BAf/j3Xt62N4XVc9PoIkB5hxCLrebGMUT7tokJlEoPV6wfE5W7J8RxV4juXn93Tp
pKUqnhQeLM50JsISDttgFCqjRzBFMAwGA1UdEwEB/wQCMAAwIAYDVR0RBBkwF4IP
dnBuLmV4YW1wbGUuY29thwTLAHEKMBMGA1UdJQQMMAoGCCsGAQUFBwMBMAoGCCqG
SM49BAMCA0gAMEUCIQCzsXDfXAxiftYdjYBCmuuiqzmvjr07dAAHBAc41457AQIg
MbJ1L4gBMWPIulvhOlgLKnEzIlHM/kHiNV8q/6Kc9Ls=
-----END CERTIFICATE-----
SSTPD_CERTIFICATE
rm -f /etc/ppp/ip-up.d/sstpd-vpn-example-com
if [ -z "$SSTP_USER" ]; then
    printf 'User: ' >&2
    read -r SSTP_USER
fi
if [ -z "${SSTP_PASSWORD:-}" ]; then
    printf "Password for %s: " "$SSTP_USER" >&2
    stty -echo 2>/dev/null || true
    read -r SSTP_PASSWORD
    stty echo 2>/dev/null || true
    echo >&2
fi
# shellcheck disable=SC2086  # $SSTPC_OPTIONS: several options
exec sstpc --ca-cert "$CA" --save-server-route $SSTPC_OPTIONS --user "$SSTP_USER" --password "$SSTP_PASSWORD" vpn.example.com:443 noauth refuse-eap refuse-chap refuse-mschap noipdefault usepeerdns ipparam sstpd-vpn-example-com defaultroute replacedefaultroute "$@"
