# sstpd client profile for Windows 10/11: SSTP connection to vpn.example.com:443
# Made by sstpd 0.0-test from the server's configuration. It holds no secret:
# Windows asks for the user name and password when you connect.
#
# As administrator (right-click PowerShell > Run as administrator):
#   powershell -ExecutionPolicy Bypass -File .\<this file>.ps1
# Without administrator rights (a connection for you only; the certificate must
# already be trusted by the computer, or come from a public CA):
#   powershell -ExecutionPolicy Bypass -File .\<this file>.ps1 -CurrentUser
# Running it again updates the connection; nothing is added twice.
[CmdletBinding()]
param(
    [switch]$CurrentUser,
    [switch]$Yes
)
$ErrorActionPreference = 'Stop'

$Name = 'vpn.example.com'
$Server = 'vpn.example.com'
$Routes = @()
$All = -not $CurrentUser

$Principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
$IsAdmin = $Principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
if ($All -and -not $IsAdmin) {
    Write-Warning 'Run this as administrator, or with -CurrentUser for a connection of your own (see the top of this file).'
    exit 1
}

# The certificate to trust: the server's self-signed certificate, CN=vpn.example.com
$Fingerprint = '5F:73:E9:8F:CC:93:E0:5F:C7:85:6E:DB:A0:05:C4:25:46:AB:C4:B2:DD:23:3A:4D:CE:5A:F0:4D:34:C9:70:CF'
$CertificateBase64 = @'
MIIBbDCCARKgAwIBAgIBCzAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA92cG4uZXhh
bXBsZS5jb20wIBcNMjUwMTAxMDAwMDAwWhgPMjEyNTAxMDEwMDAwMDBaMBoxGDAW
BgNVBAMMD3Zwbi5leGFtcGxlLmNvbTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BAf/j3Xt62N4XVc9PoIkB5hxCLrebGMUT7tokJlEoPV6wfE5W7J8RxV4juXn93Tp
pKUqnhQeLM50JsISDttgFCqjRzBFMAwGA1UdEwEB/wQCMAAwIAYDVR0RBBkwF4IP
dnBuLmV4YW1wbGUuY29thwTLAHEKMBMGA1UdJQQMMAoGCCsGAQUFBwMBMAoGCCqG
SM49BAMCA0gAMEUCIQCzsXDfXAxiftYdjYBCmuuiqzmvjr07dAAHBAc41457AQIg
MbJ1L4gBMWPIulvhOlgLKnEzIlHM/kHiNV8q/6Kc9Ls=
'@
$Der = [Convert]::FromBase64String(($CertificateBase64 -replace '\s', ''))
$Certificate = [Security.Cryptography.X509Certificates.X509Certificate2]::new($Der)
$Sha256 = [Security.Cryptography.SHA256]::Create()
$Actual = ($Sha256.ComputeHash($Der) | ForEach-Object { $_.ToString('X2') }) -join ':'
if ($Actual -ne $Fingerprint) {
    Write-Warning 'The certificate in this file does not match its fingerprint: the file was altered. Stopping.'
    exit 1
}
Write-Host "Certificate to trust: $($Certificate.Subject)"
Write-Host "SHA-256 fingerprint:  $Fingerprint"
Write-Host 'Compare it with the fingerprint your administrator gave you.'
$Present = Get-ChildItem -Path Cert:\LocalMachine\Root | Where-Object { $_.Thumbprint -eq $Certificate.Thumbprint }
if ($Present) {
    Write-Host 'It is already in the computer''s Trusted Root store.'
} elseif (-not $All) {
    Write-Warning 'It is not in the computer''s Trusted Root store: the connection will fail until an administrator runs this script without -CurrentUser.'
} else {
    if (-not $Yes) {
        $Answer = Read-Host 'Import it into the computer''s Trusted Root Certification Authorities? [y/N]'
        if ($Answer -notmatch '^[yY]') { exit 1 }
    }
    $File = Join-Path -Path $env:TEMP -ChildPath ('sstpd-' + [guid]::NewGuid() + '.cer')
    [IO.File]::WriteAllBytes($File, $Der)
    try {
        Import-Certificate -FilePath $File -CertStoreLocation Cert:\LocalMachine\Root | Out-Null
    } finally {
        Remove-Item -Path $File -Force
    }
    Write-Host 'Imported into Cert:\LocalMachine\Root.'
}

# EAP-MSCHAPv2 (the server's first choice); Windows asks for the password.
$Eap = New-EapConfiguration
# full tunnel; DNS servers come from the server when the tunnel opens.
$Existing = Get-VpnConnection -Name $Name -AllUserConnection:$All -ErrorAction SilentlyContinue
if ($Existing) {
    Set-VpnConnection -Name $Name -AllUserConnection:$All -ServerAddress $Server -TunnelType Sstp -AuthenticationMethod Eap -EapConfigXmlStream $Eap.EapConfigXmlStream -SplitTunneling $false -Force
} else {
    Add-VpnConnection -Name $Name -AllUserConnection:$All -ServerAddress $Server -TunnelType Sstp -AuthenticationMethod Eap -EapConfigXmlStream $Eap.EapConfigXmlStream -Force
}

# Routes: exactly the configured ones (stale ones removed, none added twice).
$Have = @((Get-VpnConnection -Name $Name -AllUserConnection:$All).Routes | ForEach-Object { $_.DestinationPrefix })
foreach ($Prefix in $Have) {
    if ($Routes -notcontains $Prefix) {
        Remove-VpnConnectionRoute -ConnectionName $Name -DestinationPrefix $Prefix -AllUserConnection:$All
    }
}
foreach ($Prefix in $Routes) {
    if ($Have -notcontains $Prefix) {
        Add-VpnConnectionRoute -ConnectionName $Name -DestinationPrefix $Prefix -AllUserConnection:$All
    }
}

Write-Host "VPN connection '$Name' is ready: Settings > Network & Internet > VPN."
