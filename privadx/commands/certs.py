"""``privadx certs``: the federation's CA, device and gateway certificates, broker config."""

from __future__ import annotations

import argparse
from pathlib import Path

from privadx.commands._common import print_json

HELP = "create the federation CA, gateway and device certificates and the Mosquitto TLS config"
DESCRIPTION = """\
init   creates a federation CA, a TLS server certificate for the broker with a Mosquitto
       config (mutual TLS required, username from the certificate, ACL confining each device
       to its own topics), and identities for the gateway and the given sites.
issue  adds device identities with the existing CA.
revoke revokes devices: their TLS and signing certificates go on the federation's revocation
       list (broker/crl.pem for Mosquitto, gateway/crl.pem for update signatures); restart
       the broker and the gateway to apply it. The list is valid for 365 days: run any
       revoke again before then, or TLS refuses every client.

Copy sites/<site>/ to the device and start it with `privadx edge --identity <folder>`;
the gateway runs with `--identity <pki>/gateway`. Keep ca/ca.key offline once enrolled.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``certs init`` and ``certs issue``."""
    p = sub.add_parser(
        "certs",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="new CA, broker config, gateway and site identities")
    init.add_argument("--out", type=Path, required=True, help="folder to create")
    init.add_argument("--federation", default="default", help="federation name")
    init.add_argument(
        "--broker-host",
        action="append",
        default=None,
        help="DNS name or IP the devices use to reach the broker (repeatable; "
        "default: localhost and 127.0.0.1)",
    )
    init.add_argument("--port", type=int, default=8883, help="TLS listener port (default: 8883)")
    init.add_argument("--bind", default="0.0.0.0", help="listener address (default: %(default)s)")
    init.add_argument("--sites", nargs="*", default=[], metavar="SITE", help="site ids to enrol")
    init.add_argument("--json", action="store_true", help="print the written paths as JSON")
    init.set_defaults(subparser=init, run=run_init)
    more = actions.add_parser("issue", help="enrol more sites with an existing CA")
    more.add_argument("--pki", type=Path, required=True, help="folder made by `certs init`")
    more.add_argument("sites", nargs="+", metavar="SITE", help="site ids to enrol")
    more.add_argument("--json", action="store_true", help="print the written paths as JSON")
    more.set_defaults(subparser=more, run=run_issue)
    revoke = actions.add_parser(
        "revoke", help="revoke sites' certificates (then restart the broker and the gateway)"
    )
    revoke.add_argument("--pki", type=Path, required=True, help="folder made by `certs init`")
    revoke.add_argument("sites", nargs="+", metavar="SITE", help="site ids to revoke")
    revoke.set_defaults(subparser=revoke, run=run_revoke)


def run_init(args: argparse.Namespace) -> int:
    """Create the federation's PKI folder."""
    from privadx.common.trust.federation import init_federation

    pki = init_federation(
        args.out,
        federation=args.federation,
        hosts=args.broker_host or ["localhost", "127.0.0.1"],
        port=args.port,
        bind=args.bind,
        sites=args.sites,
    )
    sites = {s: str(pki.site(s)) for s in args.sites}
    if args.json:
        print_json(
            {"broker_config": str(pki.broker_config), "gateway": str(pki.gateway), "sites": sites}
        )
    else:
        print(f"broker config: mosquitto -c {pki.broker_config}")
        print(f"gateway identity: {pki.gateway}")
        for site, folder in sites.items():
            print(f"site {site}: {folder}")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    """Enrol more sites."""
    from privadx.common.trust.federation import issue_sites

    folders = issue_sites(args.pki, args.sites)
    if args.json:
        print_json({s: str(f) for s, f in zip(args.sites, folders, strict=True)})
    else:
        for site, folder in zip(args.sites, folders, strict=True):
            print(f"site {site}: {folder}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke sites."""
    from privadx.common.trust.federation import revoke_sites

    serials = revoke_sites(args.pki, args.sites)
    print(f"revoked {', '.join(args.sites)}; {len(serials)} certificates on the list")
    print("restart (or SIGHUP) the broker and restart the gateway to apply it")
    return 0
