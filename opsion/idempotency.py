"""Where a client may put an idempotency key other than the `Idempotency-Key` header: names to point it there."""

import re


def names_idempotency_key(name: str) -> bool:
    """Whether a body field or query-string parameter called `name` is meant as the Idempotency-Key header
    (`idempotencyKey`, `idempotency_key`, `Idempotency-Key`, in any case): refused with a pointer to the header."""
    return re.sub(r"[-_ ]", "", name).lower() == "idempotencykey"
