"""End-to-end encryption of chat bodies: per-device X25519 keys held by clients, NaCl boxes per device.

The server never sees a plaintext. A sender seals one body for every device that should read it
(each device of the recipient(s), and the sender's own other devices, so they show the
conversation too) and sends the result as the `body` string of a `send` frame:

    {"v": 1, "from_key": "<sender device public key, base64>",
     "to": {"<user_id>/<device_id>": "<base64(24-byte nonce + Box ciphertext)>", ...}}

Each entry is `crypto_box` (X25519 + XSalsa20-Poly1305, libsodium through PyNaCl; tweetnacl's
`nacl.box` in the browser page: the same bytes) from the sender's device key to that device's
public key, with a fresh random nonce. A device opens the body by finding its own address and
opening that entry with its private key and `from_key`. A receiver that knows the sender device's
registered key (`GET /v1/chat/users/{id}/devices`) passes it as `expected_from_key`, so a body
that claims another key is refused rather than shown.

Devices that registered without a public key cannot read encrypted messages and are skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

ENVELOPE_VERSION = 1


class SealedBodyError(ValueError):
    """A body this device cannot open: not an envelope, not addressed to it, or tampered with."""


def address(user_id: int, device_id: str) -> str:
    """The key of a device in an envelope's `to`: `"<user_id>/<device_id>"`."""
    return f"{user_id}/{device_id}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    try:
        if not isinstance(text, str):
            raise ValueError
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SealedBodyError(f"{what} is not base64") from None


@dataclass(frozen=True)
class DeviceKeys:
    """One device's X25519 key pair; the private half never leaves the client."""

    private: PrivateKey

    @classmethod
    def generate(cls) -> DeviceKeys:
        return cls(PrivateKey.generate())

    @classmethod
    def from_private_key(cls, private_key_b64: str) -> DeviceKeys:
        """The key pair saved earlier with `private_key` (a device keeps its key across restarts)."""
        raw = _unb64(private_key_b64, "private key")
        if len(raw) != PrivateKey.SIZE:
            raise SealedBodyError(f"a private key is {PrivateKey.SIZE} bytes, got {len(raw)}")
        return cls(PrivateKey(raw))

    @property
    def public_key(self) -> str:
        """Base64 of the public key: what `POST /v1/chat/devices` registers as `public_key`."""
        return _b64(bytes(self.private.public_key))

    @property
    def private_key(self) -> str:
        return _b64(bytes(self.private))


def recipients_from(listings: Iterable[Mapping[str, Any]], *, skip: str | None = None) -> dict[str, str]:
    """Addresses -> public keys from answers of `GET /v1/chat/users/{id}/devices`, keyless devices
    left out, and `skip` (the sending device's own address) too."""
    found: dict[str, str] = {}
    for listing in listings:
        for device in listing.get("devices", []):
            key = device.get("public_key")
            where = address(int(listing["user_id"]), device["device_id"])
            if key and where != skip:
                found[where] = key
    return found


def seal(plaintext: str, sender: DeviceKeys, recipients: Mapping[str, str]) -> str:
    """The envelope (a JSON string, the `body` to send) of `plaintext` for every address given."""
    if not recipients:
        raise SealedBodyError("no device to seal for: the recipient has no device with a public key")
    message = plaintext.encode("utf-8")
    to = {}
    for where, public_key in recipients.items():
        raw = _unb64(public_key, f"public key of {where}")
        if len(raw) != PublicKey.SIZE:
            raise SealedBodyError(f"public key of {where} is {len(raw)} bytes; X25519 keys are 32")
        to[where] = _b64(bytes(Box(sender.private, PublicKey(raw)).encrypt(message)))
    return json.dumps({"v": ENVELOPE_VERSION, "from_key": sender.public_key, "to": to}, separators=(",", ":"))


def is_sealed(body: str) -> bool:
    try:
        envelope = json.loads(body)
    except ValueError:
        return False
    return isinstance(envelope, dict) and envelope.get("v") == ENVELOPE_VERSION and isinstance(envelope.get("to"), dict)


def open_sealed(body: str, keys: DeviceKeys, me: str, *, expected_from_key: str | None = None) -> str:
    """The plaintext of the entry of `body` addressed to `me` (this device's `address`)."""
    try:
        envelope = json.loads(body)
    except ValueError:
        raise SealedBodyError("the body is not an encrypted envelope (not JSON)") from None
    if not isinstance(envelope, dict) or envelope.get("v") != ENVELOPE_VERSION or not isinstance(envelope.get("to"), dict):
        raise SealedBodyError(f"the body is not a version-{ENVELOPE_VERSION} envelope")
    from_key = envelope.get("from_key")
    if expected_from_key is not None and from_key != expected_from_key:
        raise SealedBodyError("the envelope's from_key is not the sending device's registered key")
    entry = envelope["to"].get(me)
    if entry is None:
        raise SealedBodyError(f"the message was not sealed for {me} (this device registered after it was sent, "
                              "or the sender did not know its key)")
    sender_key = _unb64(from_key, "from_key")
    if len(sender_key) != PublicKey.SIZE:
        raise SealedBodyError("from_key is not a 32-byte X25519 key")
    sealed = _unb64(entry, f"entry for {me}")
    try:
        plain = Box(keys.private, PublicKey(sender_key)).decrypt(sealed)
    except CryptoError:
        raise SealedBodyError(f"the entry for {me} does not open with this device's key (tampered, "
                              "or sealed for an older key)") from None
    return plain.decode("utf-8")
