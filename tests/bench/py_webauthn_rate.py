#!/usr/bin/env python3
"""How many WebAuthn assertions one core verifies per second with py_webauthn.

The reference figure for issue #17's presence row: tetherd's presence answers/s
end to end are compared with this single-core rate, measured in the same run by
tests/bench/gateway.sh (which installs `webauthn` in a venv and pins this script
to one core with `taskset -c 0`).

The assertions are made here as a soft authenticator would: an ES256 (P-256)
key from the `cryptography` package, authenticatorData (rpIdHash, UP|UV flags,
a sign count), clientDataJSON (`webauthn.get`, the challenge, the origin) and
an ECDSA-SHA256 signature over authenticatorData || SHA-256(clientDataJSON).
Each timed call is `webauthn.verify_authentication_response` on the JSON text a
browser would send (parse, client data and rpIdHash checks, COSE key decoding,
signature verification), as tetherd's AnswerChallenge verifies one.

    python py_webauthn_rate.py [SECONDS]

Prints one number on stdout: verified assertions per second (integer).
Details (versions, count, time) go to stderr.
"""

import hashlib
import json
import os
import struct
import sys
import time
from base64 import urlsafe_b64encode

import cbor2
import webauthn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn import verify_authentication_response

RP_ID = "bench.example"
ORIGIN = "https://bench.example"
# Distinct assertions cycled through (different challenges and sign counts).
ASSERTIONS = 256


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def cose_es256(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The COSE_Key (EC2, P-256, ES256) a WebAuthn credential stores."""
    numbers = public_key.public_numbers()
    return cbor2.dumps(
        {
            1: 2,  # kty: EC2
            3: -7,  # alg: ES256
            -1: 1,  # crv: P-256
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    )


def make_assertion(key: ec.EllipticCurvePrivateKey, credential_id: bytes, challenge: bytes, sign_count: int) -> str:
    """AuthenticationResponseJSON for one challenge, signed like a soft authenticator."""
    flags = 0x01 | 0x04  # user present, user verified
    authenticator_data = hashlib.sha256(RP_ID.encode()).digest() + bytes([flags]) + struct.pack(">I", sign_count)
    client_data = json.dumps(
        {"type": "webauthn.get", "challenge": b64url(challenge), "origin": ORIGIN, "crossOrigin": False},
        separators=(",", ":"),
    ).encode()
    signed = authenticator_data + hashlib.sha256(client_data).digest()
    signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))  # DER, as WebAuthn ES256 sends it
    return json.dumps(
        {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64url(authenticator_data),
                "clientDataJSON": b64url(client_data),
                "signature": b64url(signature),
            },
            "clientExtensionResults": {},
        }
    )


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    key = ec.generate_private_key(ec.SECP256R1())
    public_key = cose_es256(key.public_key())
    credential_id = os.urandom(16)
    cases = []
    for n in range(ASSERTIONS):
        challenge = os.urandom(32)
        cases.append((challenge, make_assertion(key, credential_id, challenge, n + 1)))

    def verify(challenge: bytes, text: str) -> int:
        verified = verify_authentication_response(
            credential=text,
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
        return verified.new_sign_count

    # Every assertion must verify (and a tampered one must not) before anything is timed.
    for n, (challenge, text) in enumerate(cases):
        if verify(challenge, text) != n + 1:
            raise SystemExit("py_webauthn returned the wrong sign count")
    try:
        verify(os.urandom(32), cases[0][1])
    except Exception:  # noqa: BLE001 - any refusal is the expected outcome
        pass
    else:
        raise SystemExit("py_webauthn accepted an assertion for another challenge")

    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for challenge, text in cases:
            verify(challenge, text)
        count += len(cases)
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - started
    version = getattr(webauthn, "__version__", "?")
    print(
        f"py_webauthn {version}: {count} assertions verified in {elapsed:.2f} s on one core "
        f"(CPU affinity {sorted(os.sched_getaffinity(0))})",
        file=sys.stderr,
    )
    print(int(count / elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
