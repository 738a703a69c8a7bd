"""Optional JWT authentication, as the real server has it.

Off unless a public key is configured. On ``POST /`` only ``head.auth`` is
read: a missing or invalid token (bad signature, no ``exp``, expired) is 401;
``role=admin`` may do anything; otherwise the ``prefix`` claim must prefix
the id the request touches, else 403. ``GET /poll`` takes the token from the
``Authorization: Bearer`` header and is authenticated only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from devstack.localserver.rules import ProtocolError

_BY_ID = {
    "promise.get", "promise.create", "promise.settle", "task.get", "task.acquire", "task.release",
    "task.fulfill", "task.suspend", "task.fence", "task.halt", "task.continue", "schedule.get",
    "schedule.delete",
}  # fmt: skip


class Auth:
    def __init__(self, public_key_pem: bytes | None) -> None:
        """``None`` accepts unsigned tokens (the server's ``publickey = "none"``): claims still apply."""
        self._key: Any = None
        self._algorithms: list[str] = []
        if public_key_pem is None:
            return
        key = load_pem_public_key(public_key_pem)
        if isinstance(key, rsa.RSAPublicKey):
            self._algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            self._algorithms = ["ES256", "ES384"]
        elif isinstance(key, ed25519.Ed25519PublicKey):
            self._algorithms = ["EdDSA"]
        else:
            raise ValueError("unsupported public key type")
        self._key = key

    @classmethod
    def from_setting(cls, value: str) -> Auth:
        """A PEM file path, or ``none`` for unsigned tokens."""
        return cls(None if value == "none" else Path(value).read_bytes())

    def authenticate(self, token: str | None) -> dict[str, Any]:
        if not token:
            raise ProtocolError(401, "Unauthorized")
        try:
            if self._key is None:
                claims = jwt.decode(token, options={"verify_signature": False, "require": ["exp"], "verify_exp": True})
                return claims
            return jwt.decode(
                token, self._key, algorithms=self._algorithms, options={"require": ["exp"], "verify_aud": False}
            )
        except jwt.PyJWTError:
            raise ProtocolError(401, "Unauthorized") from None

    def authorize(self, claims: dict[str, Any], kind: str, data: dict[str, Any]) -> None:
        role = claims.get("role")
        if isinstance(role, str) and role.lower() == "admin":
            return
        prefix = claims.get("prefix")
        if not isinstance(prefix, str):
            raise ProtocolError(403, "Forbidden")
        if prefix == "":
            return
        for resource in _resources(kind, data):
            if resource is not None and not resource.startswith(prefix):
                raise ProtocolError(403, "Forbidden")


def _resources(kind: str, data: dict[str, Any]) -> list[str | None]:
    def field(obj: Any, *path: str) -> str | None:
        for key in path:
            obj = obj.get(key) if isinstance(obj, dict) else None
        return obj if isinstance(obj, str) else None

    if kind in _BY_ID:
        return [field(data, "id")]
    if kind in ("promise.register_callback", "promise.register_listener"):
        return [field(data, "awaited")]
    if kind == "schedule.create":
        return [field(data, "promiseId")]
    if kind == "task.create":
        return [field(data, "action", "data", "id")]
    if kind == "task.heartbeat":
        tasks = data.get("tasks")
        return [field(t, "id") for t in tasks] if isinstance(tasks, list) else [None]
    return [""]  # searches and unknown kinds: only an empty prefix may
