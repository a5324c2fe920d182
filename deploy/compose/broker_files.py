"""Write the Mosquitto password and ACL files of the compose stack.

Run by the compose service `broker-files` (see README.md beside this file):

    docker compose --env-file deploy/compose/leasewatch.env --profile setup run --rm broker-files

Principals, all through cloud.broker_access (the same rules the tests run against):
- the ingestor service account: LEASEWATCH_MQTT_USERNAME (default `ingestor`) and
  LEASEWATCH_MQTT_PASSWORD, the very variables the ingestors log in with;
- the read-only monitor account the broker's healthcheck uses: MOSQUITTO_MONITOR_USERNAME
  (default `monitor`) and MOSQUITTO_MONITOR_PASSWORD;
- one account per gateway from the gateways file: `device-id:password` per line, `#` comments.

Both files are written mode 0600 (the passwords hashed by `mosquitto_passwd -U`) and, with
--owner, handed to the broker's uid. Nothing secret is printed.

With --certs, the TLS files of the gateways' listener too (cloud.broker_tls): a private CA in
--ca (made once, reused) and a server certificate for the host names in MQTT_PUBLIC_HOSTS
(comma-separated: the names and addresses gateways dial), written only when --certs holds none
yet (delete server.crt to issue a new one). The server's key goes to the broker's uid; the
CA's key stays in --ca, which the broker never mounts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from cloud.broker_access import (
    BrokerAccessError,
    Principal,
    write_mosquitto_acl,
    write_mosquitto_passwords,
)
from cloud.broker_tls import BrokerCertificates, BrokerTlsError, make_broker_certificates


class SetupError(Exception):
    """The inputs cannot make a usable password file; the message says which and why."""


def read_gateways(path: Path) -> list[Principal]:
    """Gateway principals from `device-id:password` lines; blank lines and `#` comments skipped."""
    gateways: list[Principal] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        device, sep, password = line.partition(":")
        if not sep:
            raise SetupError(f"{path}:{number}: expected device-id:password")
        try:
            gateways.append(Principal.gateway(device.strip(), password))
        except ValidationError as err:
            raise SetupError(f"{path}:{number}: gateway {device.strip()!r}: {err}") from err
    return gateways


def service_principals(env: Mapping[str, str]) -> list[Principal]:
    """The ingestor and monitor accounts from the same variables the services read."""
    accounts = (
        ("ingestor", Principal.ingestor, "LEASEWATCH_MQTT_USERNAME", "LEASEWATCH_MQTT_PASSWORD"),
        ("monitor", Principal.monitor, "MOSQUITTO_MONITOR_USERNAME", "MOSQUITTO_MONITOR_PASSWORD"),
    )
    principals = []
    for default_user, make, user_var, password_var in accounts:
        password = env.get(password_var, "")
        if len(password) < 12:
            raise SetupError(f"{password_var} must be set to a secret of 12 or more characters")
        try:
            principals.append(make(env.get(user_var) or default_user, password))
        except ValidationError as err:
            raise SetupError(f"{user_var}/{password_var}: {err}") from err
    return principals


def certificates(
    certs: Path, ca: Path, env: Mapping[str, str], owner: tuple[int, int] | None
) -> str:
    """Issue the broker's TLS files unless --certs already holds them; says what it did."""
    files = BrokerCertificates(certs, ca)
    if files.server_cert.exists() and files.server_key.exists():
        return f"kept {files.server_cert} (delete it to issue a new one)"
    hosts = [h.strip() for h in env.get("MQTT_PUBLIC_HOSTS", "").split(",") if h.strip()]
    if not hosts:
        raise SetupError("MQTT_PUBLIC_HOSTS must name the host names gateways dial (a,b,...)")
    files = make_broker_certificates(certs, hosts, ca_directory=ca)
    if owner is not None:
        for path in (files.server_cert, files.server_key):
            os.chown(path, *owner)
    return f"wrote {files.server_cert} for {', '.join(hosts)}; gateways trust {files.ca_cert}"


def _owner(value: str) -> tuple[int, int]:
    uid, _, gid = value.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected UID:GID, got {value!r}") from err


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Write `passwd` and `acl` into --out; return the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for passwd and acl")
    parser.add_argument("--gateways", type=Path, help="file of device-id:password lines")
    parser.add_argument("--owner", type=_owner, help="UID:GID to own both files (the broker's)")
    parser.add_argument("--certs", type=Path, help="directory for server.crt and server.key")
    parser.add_argument("--ca", type=Path, help="directory for ca.crt and ca.key")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    try:
        if args.certs is not None:
            print(certificates(args.certs, args.ca or args.certs, env, args.owner))
        principals = service_principals(env)
        if args.gateways is not None and args.gateways.is_file():
            principals += read_gateways(args.gateways)
        elif args.gateways is not None:
            print(f"{args.gateways} not found: no gateway accounts written", file=sys.stderr)
        args.out.mkdir(parents=True, exist_ok=True)
        write_mosquitto_passwords(principals, args.out / "passwd")
        write_mosquitto_acl(principals, args.out / "acl")
    except (SetupError, BrokerAccessError, BrokerTlsError, OSError) as err:
        print(f"broker files not written: {err}", file=sys.stderr)
        return 2
    if args.owner is not None:
        for name in ("passwd", "acl"):
            os.chown(args.out / name, *args.owner)
    roles = ", ".join(f"{p.username} ({p.role.value})" for p in principals[:2])
    print(f"wrote {args.out}/passwd and acl: {roles} and {len(principals) - 2} gateway(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
