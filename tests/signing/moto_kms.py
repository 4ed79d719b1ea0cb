"""An AWS KMS API on loopback for the KMS adapter's tests: moto's server, run as a process.

AWS KMS cannot run here, so this is a stand-in (said in the tests that use it). It is moto's
own server with one gap filled: moto 5 signs the bytes it is given as a message even when
the request says ``MessageType=DIGEST`` (a documented limitation), which is what
securesystemslib's AWSSigner sends. Here a DIGEST request is signed as AWS does (the
digest as is, not hashed again), except for keys whose description is ``HASHES-DIGESTS``:
they keep moto's behaviour, a service that returns signatures over other bytes.

    python -m tests.signing.moto_kms PORT
"""

from __future__ import annotations

import sys
import threading
from typing import Any

WRONG = "HASHES-DIGESTS"


def _fill_digest_gap() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric import utils as asym
    from moto.kms import responses
    from moto.kms.utils import ECDSAPrivateKey

    state = threading.local()
    sign_request = responses.KmsResponse.sign

    def sign(self: Any) -> str:
        digest = self._get_param("MessageType") == "DIGEST"
        if digest:
            key = self.kms_backend.describe_key(self._get_param("KeyId"))
            digest = key.description != WRONG
        state.digest = digest
        try:
            return str(sign_request(self))
        finally:
            state.digest = False

    ecdsa_sign = ECDSAPrivateKey.sign

    def sign_ecdsa(self: Any, message: bytes, signing_algorithm: str) -> bytes:
        if not getattr(state, "digest", False):
            return bytes(ecdsa_sign(self, message, signing_algorithm))
        hashed = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
        return bytes(self.private_key.sign(message, ec.ECDSA(asym.Prehashed(hashed))))

    responses.KmsResponse.sign = sign  # type: ignore[method-assign]
    ECDSAPrivateKey.sign = sign_ecdsa  # type: ignore[method-assign]


def main(port: int) -> None:
    from moto.server import main as serve

    _fill_digest_gap()
    serve(["-H", "127.0.0.1", "-p", str(port)])


if __name__ == "__main__":
    main(int(sys.argv[1]))
