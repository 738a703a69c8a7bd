#!/usr/bin/env python3
"""Make the Resonate server's JWT key pair and the tokens the components use.

The server verifies every request against a public key (RESONATE_AUTH__PUBLICKEY;
RSA, EC or Ed25519 PEM). Keep the private key offline; Terraform only ever sees
the public half (var.resonate_jwt_public_key).

    .venv/bin/python infra/tools/resonate_token.py keygen --private resonate-jwt.key --public resonate-jwt.pub
    .venv/bin/python infra/tools/resonate_token.py mint --private resonate-jwt.key --subject worker --days 365 \\
        | gcloud secrets versions add hitl-resonate-token-worker --data-file=-

Claims: ``sub``, ``iat``, ``exp`` (required by the server) and ``prefix``: every
promise or task id a request touches must start with it ("" allows every id).
``--admin`` gives ``role=admin`` instead (operators' tools only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def keygen(private: Path, public: Path) -> None:
    if private.exists():
        raise SystemExit(f"{private} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def mint(private_pem: bytes, subject: str, days: float, prefix: str, admin: bool, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": subject, "iat": issued, "exp": issued + int(days * 86400)}
    if admin:
        claims["role"] = "admin"
    else:
        claims["prefix"] = prefix
    key = serialization.load_pem_private_key(private_pem, password=None)
    algorithm = "EdDSA" if isinstance(key, Ed25519PrivateKey) else _algorithm_for(key)
    return jwt.encode(claims, key, algorithm=algorithm)


def _algorithm_for(key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384"}[key.curve.name]
    raise SystemExit("unsupported key type: use Ed25519, RSA, or EC P-256/P-384")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen", help="write a new Ed25519 key pair (PEM)")
    k.add_argument("--private", type=Path, required=True)
    k.add_argument("--public", type=Path, required=True)
    m = sub.add_parser("mint", help="print a signed token on stdout")
    m.add_argument("--private", type=Path, required=True)
    m.add_argument("--subject", required=True, help="who holds it: start, unblock, worker, e2e...")
    m.add_argument("--days", type=float, default=365.0)
    m.add_argument("--prefix", default="", help='ids the token may touch must start with this ("" = any)')
    m.add_argument("--admin", action="store_true", help="role=admin instead of a prefix")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        keygen(args.private, args.public)
        print(f"wrote {args.private} (keep it offline) and {args.public}", file=sys.stderr)
    else:
        # No trailing newline: the secret holds exactly the token.
        sys.stdout.write(mint(args.private.read_bytes(), args.subject, args.days, args.prefix, args.admin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
