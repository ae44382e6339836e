"""The CA of ``amr pki`` (headend.pki, headend.cli.pki): what it writes is what a broker and its
clients need, and what it refuses it refuses with a clear message and exit status 2."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from headend.cli.main import main
from headend.pki import (
    AlreadyInitialised,
    AlreadyRevoked,
    Busy,
    CertificateAuthority,
    CertKind,
    InvalidName,
    NameTaken,
    NotInitialised,
    PkiError,
    UnknownCertificate,
)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "pki")


def test_init_makes_a_p256_ca_with_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "pki", common_name="Utility CA")
    assert stat.S_IMODE(ca.key_path_ca.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "pki" / "private").stat().st_mode) == 0o700
    key = serialization.load_pem_private_key(ca.key_path_ca.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    cert = _cert(ca.ca_cert_path)
    assert _cn(cert) == "Utility CA"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)  # self-signed
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    # an empty CRL from the start: the broker's crlfile must exist before anything is revoked
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert len(list(crl)) == 0
    assert crl.is_signature_valid(cert.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "name", "usage"),
    [
        (CertKind.GATEWAY, "gw-0042", ExtendedKeyUsageOID.CLIENT_AUTH),
        (CertKind.HEADEND, "headend-1", ExtendedKeyUsageOID.CLIENT_AUTH),
    ],
)
def test_client_certificates_carry_the_identity_as_cn_and_chain_to_the_ca(
    ca: CertificateAuthority, kind: CertKind, name: str, usage: x509.ObjectIdentifier
) -> None:
    issued = ca.issue(kind, name, days=30)
    cert = _cert(ca.cert_path(name))
    assert _cn(cert) == name
    assert cert.serial_number == issued.serial
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == (
        x509.ExtendedKeyUsage([usage])
    )
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(_cert(ca.ca_cert_path))
    assert dt.timedelta(days=29) < cert.not_valid_after_utc - cert.not_valid_before_utc
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < dt.timedelta(days=31)
    key = serialization.load_pem_private_key(ca.key_path(name).read_bytes(), None)
    assert key.public_key() == cert.public_key()
    assert stat.S_IMODE(ca.key_path(name).stat().st_mode) == 0o600


def test_openssl_accepts_a_gateway_certificate_for_a_client_and_not_for_a_server(
    ca: CertificateAuthority,
) -> None:
    ca.issue(CertKind.GATEWAY, "gw-0042")
    ca.issue(CertKind.SERVER, "broker.example.org", alt_names=["10.0.0.5"])

    def verify(name: str, purpose: str) -> int:
        return subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca.ca_cert_path), "-purpose", purpose,
             str(ca.cert_path(name))],
            capture_output=True, check=False,
        ).returncode  # fmt: skip

    assert verify("gw-0042", "sslclient") == 0
    assert verify("gw-0042", "sslserver") != 0
    assert verify("broker.example.org", "sslserver") == 0
    assert verify("broker.example.org", "sslclient") != 0


def test_a_server_certificate_names_its_hosts_and_addresses(ca: CertificateAuthority) -> None:
    ca.issue(CertKind.SERVER, "broker.example.org", alt_names=["10.0.0.5", "mqtt.example.org"])
    cert = _cert(ca.cert_path("broker.example.org"))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["broker.example.org", "mqtt.example.org"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == (
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    )


def test_revoking_puts_the_serial_in_a_fresh_signed_crl(ca: CertificateAuthority) -> None:
    kept = ca.issue(CertKind.GATEWAY, "gw-1")
    by_name = ca.issue(CertKind.GATEWAY, "gw-2")
    by_serial = ca.issue(CertKind.GATEWAY, "gw-3")
    ca.revoke("gw-2")
    ca.revoke(f"{by_serial.serial:X}".lower())
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.is_signature_valid(_cert(ca.ca_cert_path).public_key())  # type: ignore[arg-type]
    assert {entry.serial_number for entry in crl} == {by_name.serial, by_serial.serial}
    assert crl.get_revoked_certificate_by_serial_number(kept.serial) is None
    assert crl.next_update_utc is not None
    assert crl.next_update_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
    states = {c.name: c.revoked_at is not None for c in ca.certificates()}
    assert states == {"gw-1": False, "gw-2": True, "gw-3": True}


def test_a_revoked_gateway_can_be_enrolled_again_with_a_new_key(ca: CertificateAuthority) -> None:
    first = ca.issue(CertKind.GATEWAY, "gw-1")
    old_key = ca.key_path("gw-1").read_bytes()
    with pytest.raises(NameTaken, match="gw-1 already has a valid certificate"):
        ca.issue(CertKind.GATEWAY, "gw-1")
    ca.revoke("gw-1")
    second = ca.issue(CertKind.GATEWAY, "gw-1")
    assert second.serial != first.serial
    assert ca.key_path("gw-1").read_bytes() != old_key
    assert _cert(ca.cert_path("gw-1")).serial_number == second.serial
    # the name now means the valid certificate; the revoked one stays in the CRL
    assert ca.find("gw-1") == second
    with pytest.raises(AlreadyRevoked):
        ca.revoke(f"{first.serial:X}")


def test_names_are_unique_across_kinds(ca: CertificateAuthority) -> None:
    ca.issue(CertKind.HEADEND, "headend-1")
    with pytest.raises(NameTaken):
        ca.issue(CertKind.SERVER, "headend-1")


@pytest.mark.parametrize(
    ("kind", "name", "why"),
    [
        (CertKind.GATEWAY, "gw/0042", "1 to 64 of A-Z"),
        (CertKind.GATEWAY, "gw-+", "1 to 64 of A-Z"),
        (CertKind.GATEWAY, "x" * 65, "1 to 64 of A-Z"),
        (CertKind.GATEWAY, "headend-9", "may not start with 'headend'"),
        (CertKind.GATEWAY, "HeadEnd-9", "may not start with 'headend'"),
        (CertKind.HEADEND, "hq-1", "start with 'headend'"),
        (CertKind.SERVER, "bad_host name", "DNS host name or an IP address"),
    ],
)
def test_a_name_the_acl_could_not_confine_is_refused(
    ca: CertificateAuthority, kind: CertKind, name: str, why: str
) -> None:
    with pytest.raises(InvalidName, match=why):
        ca.issue(kind, name)
    assert ca.certificates() == []


def test_a_damaged_ca_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = CertificateAuthority.init(tmp_path / "pki")
    ca.key_path_ca.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(PkiError, match="damaged"):
        CertificateAuthority(tmp_path / "pki")
    CertificateAuthority.init(tmp_path / "other")
    (tmp_path / "other" / "index.json").write_text("{not json")
    assert main(["pki", "list", "--dir", str(tmp_path / "other")]) == 2
    assert "index.json is damaged" in capsys.readouterr().err


def test_a_second_run_on_the_same_ca_is_refused_while_the_first_holds_it(
    ca: CertificateAuthority,
) -> None:
    with ca.locked():  # as another amr pki process would
        with pytest.raises(Busy, match="another amr pki"):
            ca.issue(CertKind.GATEWAY, "gw-1")
        with pytest.raises(Busy):
            ca.write_crl()
    assert ca.certificates() == []
    ca.issue(CertKind.GATEWAY, "gw-1")  # free again
    assert [c.name for c in ca.certificates()] == ["gw-1"]


def test_errors_before_init_and_for_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(NotInitialised, match="run amr pki init"):
        CertificateAuthority(tmp_path / "nothing")
    ca = CertificateAuthority.init(tmp_path / "pki")
    with pytest.raises(AlreadyInitialised):
        CertificateAuthority.init(tmp_path / "pki")
    with pytest.raises(UnknownCertificate, match="'gw-7'"):
        ca.revoke("gw-7")
    with pytest.raises(UnknownCertificate):
        ca.revoke("ABCDEF")  # a serial nobody has
    with pytest.raises(PkiError, match="only a server certificate"):
        ca.issue(CertKind.GATEWAY, "gw-1", alt_names=["10.0.0.1"])


# -- the command line -------------------------------------------------------------------------


def test_cli_issues_lists_and_revokes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = str(tmp_path / "pki")
    assert main(["pki", "init", "--dir", folder]) == 0
    assert main(["pki", "--dir", folder, "issue", "gateway", "gw-0042"]) == 0
    assert main(["pki", "issue", "--dir", folder, "server", "127.0.0.1", "--alt", "localhost"]) == 0
    assert main(["pki", "revoke", "--dir", folder, "gw-0042"]) == 0
    capsys.readouterr()
    assert main(["pki", "list", "--dir", folder]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SERIAL", "KIND", "NAME", "NOT", "AFTER", "STATUS"]
    rows = {line.split()[2]: line.split() for line in lines[1:3]}
    assert rows["gw-0042"][1] == "gateway" and rows["gw-0042"][4] == "revoked"
    assert rows["127.0.0.1"][1] == "server" and rows["127.0.0.1"][4] == "valid"
    assert lines[3].startswith("CRL valid until ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["issue", "gateway", "gw-1"], "no CA in"),
        (["revoke", "gw-1"], "no CA in"),
        (["list"], "no CA in"),
    ],
)
def test_cli_refuses_before_init_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["pki", argv[0], "--dir", str(tmp_path / "pki"), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"amr pki {argv[0]}: {message}")
    assert "Traceback" not in err


def test_cli_refusals_are_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(tmp_path / "pki")
    assert main(["pki", "init", "--dir", folder]) == 0
    assert main(["pki", "issue", "--dir", folder, "gateway", "gw-1"]) == 0
    capsys.readouterr()
    cases = [
        (["init", "--dir", folder], "already holds a CA"),
        (["issue", "--dir", folder, "gateway", "gw-1"], "gw-1 already has a valid certificate"),
        (["issue", "--dir", folder, "gateway", "gw/1"], "invalid name 'gw/1'"),
        (["revoke", "--dir", folder, "gw-2"], "no certificate named 'gw-2'"),
        (["list"], "--dir DIR is required"),
    ]
    for argv, message in cases:
        assert main(["pki", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err, argv
        assert len(err.strip().splitlines()) == 1, err
