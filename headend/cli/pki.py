"""``amr pki``: the small CA that issues the broker link's certificates (``headend.pki``).

    amr pki init   --dir /etc/amr/pki
    amr pki issue  --dir /etc/amr/pki server broker.example.org --alt 10.0.0.5
    amr pki issue  --dir /etc/amr/pki headend headend-1
    amr pki issue  --dir /etc/amr/pki gateway gw-0042
    amr pki revoke --dir /etc/amr/pki gw-0042        (or the serial that list shows)
    amr pki crl    --dir /etc/amr/pki                (a fresh CRL before the old one expires)
    amr pki list   --dir /etc/amr/pki

``--dir`` may come before or after the subcommand. Exit status: 0 done, 2 refused (a bad command
line, no CA yet, a name already issued, an unknown name; the message says why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

EXIT_REFUSED = 2
KINDS = ("gateway", "headend", "server")  # headend.pki.CertKind, without importing cryptography


def _dir(args: argparse.Namespace) -> Path:
    from headend.pki import PkiError

    folder = args.sub_dir or args.dir
    if not folder:
        raise PkiError("--dir DIR is required (the CA's folder)")
    return Path(folder)


def _init(args: argparse.Namespace) -> int:
    from headend.pki import CertificateAuthority

    ca = CertificateAuthority.init(_dir(args), common_name=args.name, days=args.days)
    print(f"CA {args.name!r} made in {ca.folder}")
    print(f"  certificate {ca.ca_cert_path} (give it to the broker and to every client)")
    print(f"  key         {ca.key_path_ca} (mode 0600: keep it off the broker, back it up)")
    print(f"  CRL         {ca.crl_path} (the broker's crlfile)")
    return 0


def _issue(args: argparse.Namespace) -> int:
    from headend.pki import CertificateAuthority, CertKind

    ca = CertificateAuthority(_dir(args))
    issued = ca.issue(CertKind(args.kind), args.name, days=args.days, alt_names=args.alt or ())
    print(f"{issued.kind} certificate for {issued.name}, serial {issued.serial:040X}, "
          f"valid until {issued.not_after:%Y-%m-%d}")  # fmt: skip
    print(f"  certificate {ca.cert_path(issued.name)}")
    print(f"  key         {ca.key_path(issued.name)} (mode 0600)")
    print(f"  CA          {ca.ca_cert_path}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from headend.pki import CertificateAuthority

    ca = CertificateAuthority(_dir(args))
    revoked = ca.revoke(args.which)
    print(f"revoked {revoked.name} (serial {revoked.serial:040X}); {ca.crl_path} rewritten")
    print("  copy it to the broker (/etc/mosquitto/amr/crl.pem) and restart the broker: a reload")
    print("  refuses new connections, a restart also cuts the one already open (docs/deploy.md)")
    return 0


def _crl(args: argparse.Namespace) -> int:
    from headend.pki import CertificateAuthority

    ca = CertificateAuthority(_dir(args))
    crl = ca.write_crl()
    print(f"{ca.crl_path}: {len(list(crl))} revoked, valid until {crl.next_update_utc:%Y-%m-%d}")
    return 0


def _list(args: argparse.Namespace) -> int:
    import datetime as dt

    from headend.pki import CertificateAuthority

    ca = CertificateAuthority(_dir(args))
    now = dt.datetime.now(dt.UTC)
    rows = [("SERIAL", "KIND", "NAME", "NOT AFTER", "STATUS")]
    for issued in ca.certificates():
        if issued.revoked_at is not None:
            status = f"revoked {issued.revoked_at:%Y-%m-%d}"
        elif issued.not_after < now:
            status = "expired"
        else:
            status = "valid"
        rows.append((f"{issued.serial:040X}", issued.kind, issued.name,
                     f"{issued.not_after:%Y-%m-%d}", status))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  "
              + row[-1])  # fmt: skip
    next_update = ca.crl_next_update()
    if next_update is not None:
        print(f"CRL valid until {next_update:%Y-%m-%d} (renew with amr pki crl)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from headend.pki import PkiError

    try:
        status: int = args.pki_handler(args)
    except PkiError as exc:
        print(f"amr pki {args.pki_command}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"amr pki {args.pki_command}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return status


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return days


def register(commands: Any) -> None:
    """Add ``amr pki ...`` to the ``amr`` parser's subcommands."""
    parser = commands.add_parser(
        "pki", help="the CA for the broker link: issue and revoke TLS client certificates",
        description="A small CA (ECDSA P-256) for the MQTT broker link: the broker's server "
        "certificate, one client certificate per gateway (CN = gateway id) and per head-end "
        "process (CN = headend-...), revocation and the CRL.",
    )  # fmt: skip
    parser.add_argument("--dir", help="the CA's folder")
    sub = parser.add_subparsers(dest="pki_command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", dest="sub_dir", metavar="DIR", help="the CA's folder")

    init = sub.add_parser("init", parents=[common], help="make the CA key and certificate")
    init.add_argument("--name", default="amr-sts CA", help="the CA's common name")
    init.add_argument("--days", type=_days, default=20 * 365, help="validity (default 20 years)")
    init.set_defaults(pki_handler=_init)

    issue = sub.add_parser(
        "issue", parents=[common], help="make a key and a certificate signed by the CA",
        description="gateway GW_ID: a gateway's client certificate (CN = the gateway id); "
        "headend NAME: a head-end process's (NAME starts with 'headend'); server HOST: the "
        "broker's, with HOST and every --alt as subjectAltNames (DNS names or IP addresses).",
    )  # fmt: skip
    issue.add_argument("kind", choices=KINDS)
    issue.add_argument("name", help="gateway id, head-end name or the broker's host name")
    issue.add_argument("--days", type=_days, default=5 * 365, help="validity (default 5 years)")
    issue.add_argument("--alt", action="append", metavar="HOST",
                       help="server only: another DNS name or IP address (repeatable)")  # fmt: skip
    issue.set_defaults(pki_handler=_issue)

    revoke = sub.add_parser(
        "revoke", parents=[common], help="revoke a certificate and rewrite crl.pem"
    )
    revoke.add_argument("which", metavar="SERIAL-or-NAME")
    revoke.set_defaults(pki_handler=_revoke)

    crl = sub.add_parser("crl", parents=[common], help="write a fresh crl.pem (valid one year)")
    crl.set_defaults(pki_handler=_crl)

    listing = sub.add_parser("list", parents=[common], help="list issued certificates")
    listing.set_defaults(pki_handler=_list)
    parser.set_defaults(handler=_run)
