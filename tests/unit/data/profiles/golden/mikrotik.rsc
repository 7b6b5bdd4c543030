# sstpd client profile for MikroTik RouterOS 7: SSTP client to vpn.example.com:443
# Made by sstpd 0.0-test from the server's configuration. It holds no secret:
# set the password at the end. Run: /import file-name=<this file>.rsc
# Running it again replaces what it made (named sstpd-vpn.example.com / sstp-vpn.example.com).

/ip route remove [find comment="sstpd-vpn.example.com"]
/interface sstp-client remove [find name="sstp-vpn.example.com"]
# The certificate to trust (self-signed server certificate): CN=vpn.example.com
# SHA-256 5F:73:E9:8F:CC:93:E0:5F:C7:85:6E:DB:A0:05:C4:25:46:AB:C4:B2:DD:23:3A:4D:CE:5A:F0:4D:34:C9:70:CF
/certificate remove [find name="sstpd-vpn.example.com"]
/file remove [find name="sstpd-vpn.example.com.crt"]
/file add name="sstpd-vpn.example.com.crt" contents="-----BEGIN CERTIFICATE-----\nMIIBbDCCARKgAwIBAgIBCzAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA92cG4uZXhh\nbXBsZS5jb20wIBcNMjUwMTAxMDAwMDAwWhgPMjEyNTAxMDEwMDAwMDBaMBoxGDAW\nBgNVBAMMD3Zwbi5leGFtcGxlLmNvbTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA\nBAf/j3Xt62N4XVc9PoIkB5hxCLrebGMUT7tokJlEoPV6wfE5W7J8RxV4juXn93Tp\npKUqnhQeLM50JsISDttgFCqjRzBFMAwGA1UdEwEB/wQCMAAwIAYDVR0RBBkwF4IP\ndnBuLmV4YW1wbGUuY29thwTLAHEKMBMGA1UdJQQMMAoGCCsGAQUFBwMBMAoGCCqG\nSM49BAMCA0gAMEUCIQCzsXDfXAxiftYdjYBCmuuiqzmvjr07dAAHBAc41457AQIg\nMbJ1L4gBMWPIulvhOlgLKnEzIlHM/kHiNV8q/6Kc9Ls=\n-----END CERTIFICATE-----\n"
:delay 1s
/certificate import file-name="sstpd-vpn.example.com.crt" passphrase=""
/certificate set [find fingerprint="5f73e98fcc93e05fc7856edba005c42546abc4b2dd233a4dce5af04d34c970cf"] name="sstpd-vpn.example.com"
/file remove [find name="sstpd-vpn.example.com.crt"]
/interface sstp-client add name="sstp-vpn.example.com" connect-to=vpn.example.com port=443 user="alice" authentication=mschap2,pap verify-server-certificate=yes verify-server-address-from-certificate=yes pfs=yes tls-version=any ciphers=aes256-gcm-sha384,aes256-sha add-default-route=no comment="sstpd-vpn.example.com" disabled=yes
# Split tunnel: these networks go through the VPN.
/ip route add dst-address=10.1.0.0/16 gateway="sstp-vpn.example.com" comment="sstpd-vpn.example.com"
/ip route add dst-address=192.168.5.0/24 gateway="sstp-vpn.example.com" comment="sstpd-vpn.example.com"
# DNS servers of the VPN: 10.77.0.53
# Now set the password and enable the interface:
#   /interface sstp-client set [find name="sstp-vpn.example.com"] password="..." disabled=no
