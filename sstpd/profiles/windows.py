"""Windows 10/11: a PowerShell script that trusts the certificate and makes the connection.

The script checks that it runs elevated (the certificate goes into the *computer's*
Trusted Root store, where the SSTP client looks), shows the certificate's SHA-256
fingerprint and asks before importing it, then creates or updates the connection with
the built-in VpnClient cmdlets. Re-running it updates the same connection (Set-VpnConnection)
and makes its routes exactly the configured ones, so nothing is ever added twice.

``-CurrentUser`` is the path without administrator rights: a connection for this user
only (no ``-AllUserConnection``) and no certificate import, which needs an administrator
once (or a certificate from a public CA, which needs none).

Every cmdlet call is on one line with its parameters spelled out, so that a reader (and
tests/unit/test_profiles.py, which checks them against the documented parameters) can
see exactly what runs. No secret: Windows asks for the user name and password.
"""

from __future__ import annotations

import base64
import textwrap

from sstpd.profiles.facts import ClientFacts

__all__ = ["render"]

SUPPORTED = ("eap-mschapv2", "mschapv2", "pap")


def _q(text: str) -> str:
    """A PowerShell single-quoted string (no expansion; ' doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _array(items: tuple[str, ...]) -> str:
    return "@(" + ", ".join(_q(i) for i in items) + ")"


def render(facts: ClientFacts, user: str | None, version: str) -> str:
    method = facts.preferred(SUPPORTED)[0]
    server = facts.name if facts.port == 443 else facts.target
    lines = [
        f"# sstpd client profile for Windows 10/11: SSTP connection to {facts.target}",
        f"# Made by sstpd {version} from the server's configuration. It holds no secret:",
        "# Windows asks for the user name and password when you connect.",
        "#",
        "# As administrator (right-click PowerShell > Run as administrator):",
        "#   powershell -ExecutionPolicy Bypass -File .\\<this file>.ps1",
        "# Without administrator rights (a connection for you only; the certificate must",
        "# already be trusted by the computer, or come from a public CA):",
        "#   powershell -ExecutionPolicy Bypass -File .\\<this file>.ps1 -CurrentUser",
        "# Running it again updates the connection; nothing is added twice.",
        "[CmdletBinding()]",
        "param(",
        "    [switch]$CurrentUser,",
        "    [switch]$Yes",
        ")",
        "$ErrorActionPreference = 'Stop'",
        "",
        f"$Name = {_q(facts.name)}",
        f"$Server = {_q(server)}",
        f"$Routes = {_array(facts.routes)}",
    ]
    if user:
        lines.append(f"$UserHint = {_q(user)}")
    lines += [
        "$All = -not $CurrentUser",
        "",
        "$Principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal."
        "WindowsIdentity]::GetCurrent())",
        "$IsAdmin = $Principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)",
        "if ($All -and -not $IsAdmin) {",
        "    Write-Warning 'Run this as administrator, or with -CurrentUser for a connection of"
        " your own (see the top of this file).'",
        "    exit 1",
        "}",
        "",
    ]
    lines += _certificate(facts)
    lines += _connection(facts, method)
    lines += [
        "",
        "# Routes: exactly the configured ones (stale ones removed, none added twice).",
        "$Have = @((Get-VpnConnection -Name $Name -AllUserConnection:$All).Routes |"
        " ForEach-Object { $_.DestinationPrefix })",
        "foreach ($Prefix in $Have) {",
        "    if ($Routes -notcontains $Prefix) {",
        "        Remove-VpnConnectionRoute -ConnectionName $Name -DestinationPrefix $Prefix"
        " -AllUserConnection:$All",
        "    }",
        "}",
        "foreach ($Prefix in $Routes) {",
        "    if ($Have -notcontains $Prefix) {",
        "        Add-VpnConnectionRoute -ConnectionName $Name -DestinationPrefix $Prefix"
        " -AllUserConnection:$All",
        "    }",
        "}",
        "",
        "Write-Host \"VPN connection '$Name' is ready: Settings > Network & Internet > VPN.\"",
    ]
    if user:
        lines.append('Write-Host "Sign in as $UserHint (Windows asks for the password)."')
    return "\r\n".join(lines) + "\r\n"


def _certificate(facts: ClientFacts) -> list[str]:
    trust = facts.trust
    if trust is None:
        return [
            "# The server's certificate comes from a public CA: nothing to import.",
            f"# Its SHA-256 fingerprint: {facts.server_sha256 or 'unknown'}",
            "",
        ]
    what = "the server's self-signed certificate" if trust.self_signed_server else "the CA"
    b64 = textwrap.wrap(base64.b64encode(trust.der).decode(), 64)
    return [
        f"# The certificate to trust: {what}, {trust.subject}",
        f"$Fingerprint = {_q(trust.sha256)}",
        "$CertificateBase64 = @'",
        *b64,
        "'@",
        "$Der = [Convert]::FromBase64String(($CertificateBase64 -replace '\\s', ''))",
        "$Certificate = [Security.Cryptography.X509Certificates.X509Certificate2]::new($Der)",
        "$Sha256 = [Security.Cryptography.SHA256]::Create()",
        "$Actual = ($Sha256.ComputeHash($Der) | ForEach-Object { $_.ToString('X2') }) -join ':'",
        "if ($Actual -ne $Fingerprint) {",
        "    Write-Warning 'The certificate in this file does not match its fingerprint: the"
        " file was altered. Stopping.'",
        "    exit 1",
        "}",
        'Write-Host "Certificate to trust: $($Certificate.Subject)"',
        'Write-Host "SHA-256 fingerprint:  $Fingerprint"',
        "Write-Host 'Compare it with the fingerprint your administrator gave you.'",
        "$Present = Get-ChildItem -Path Cert:\\LocalMachine\\Root | Where-Object"
        " { $_.Thumbprint -eq $Certificate.Thumbprint }",
        "if ($Present) {",
        "    Write-Host 'It is already in the computer''s Trusted Root store.'",
        "} elseif (-not $All) {",
        "    Write-Warning 'It is not in the computer''s Trusted Root store: the connection"
        " will fail until an administrator runs this script without -CurrentUser.'",
        "} else {",
        "    if (-not $Yes) {",
        "        $Answer = Read-Host 'Import it into the computer''s Trusted Root Certification"
        " Authorities? [y/N]'",
        "        if ($Answer -notmatch '^[yY]') { exit 1 }",
        "    }",
        "    $File = Join-Path -Path $env:TEMP -ChildPath ('sstpd-' + [guid]::NewGuid() + '.cer')",
        "    [IO.File]::WriteAllBytes($File, $Der)",
        "    try {",
        "        Import-Certificate -FilePath $File -CertStoreLocation Cert:\\LocalMachine\\Root"
        " | Out-Null",
        "    } finally {",
        "        Remove-Item -Path $File -Force",
        "    }",
        "    Write-Host 'Imported into Cert:\\LocalMachine\\Root.'",
        "}",
        "",
    ]


def _connection(facts: ClientFacts, method: str) -> list[str]:
    if method == "eap-mschapv2":
        auth = "-AuthenticationMethod Eap -EapConfigXmlStream $Eap.EapConfigXmlStream"
        pre = [
            "# EAP-MSCHAPv2 (the server's first choice); Windows asks for the password.",
            "$Eap = New-EapConfiguration",
        ]
    else:
        name = {"mschapv2": "MSChapv2", "pap": "Pap"}[method]
        auth = f"-AuthenticationMethod {name}"
        pre = [f"# {name}: the server's first choice of the methods Windows offers."]
        if method == "pap":
            # PAP has no MPPE keys: Windows refuses it with the default "Required" data
            # encryption. SSTP's TLS encrypts the whole tunnel anyway.
            auth += " -EncryptionLevel Optional"
    common = f"-Name $Name -AllUserConnection:$All -ServerAddress $Server -TunnelType Sstp {auth}"
    if facts.domain:
        common += f" -DnsSuffix {_q(facts.domain)}"
    split_add = " -SplitTunneling" if facts.routes else ""
    split_set = " -SplitTunneling $true" if facts.routes else " -SplitTunneling $false"
    tunnel = "split tunnel: only the routes below" if facts.routes else "full tunnel"
    return [
        *pre,
        f"# {tunnel}; DNS servers come from the server when the tunnel opens.",
        "$Existing = Get-VpnConnection -Name $Name -AllUserConnection:$All"
        " -ErrorAction SilentlyContinue",
        "if ($Existing) {",
        f"    Set-VpnConnection {common}{split_set} -Force",
        "} else {",
        f"    Add-VpnConnection {common}{split_add} -Force",
        "}",
    ]
