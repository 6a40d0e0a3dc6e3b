"""Use counts handed from a fedgate token to the native credential it asks for.

A counted token (``uses=N``) that asks ``/token/native`` for an iRODS ticket gives the
ticket its uses, taken from the same counter: the request's own use (already spent by
its authentication) plus every use left, so the token has none afterwards. The ticket
and the token together never get more than N, however many times the token asks
(the ticket does not get N, then N-1, then ...).

The counter is the ``uses_left`` column of ``issued_tokens``, which
``TokenService.consume_use`` decrements one use at a time for the token and each counted
ancestor it was narrowed from; here the same rows lose as many uses at once.
"""

from __future__ import annotations

from tokens.claims import TokenClaims
from tokens.store import Store


def take_remaining(store: Store, claims: TokenClaims) -> int:
    """Take every use left on a counted token (and as many from its counted ancestors),
    atomically; returns how many were taken (0 when none were left)."""
    if claims.uses is None:
        return 0
    ids = sorted({claims.jti, *claims.chain})
    marks = ", ".join("?" for _ in ids)
    # Rows locked in jti order, as consume_use does, so the two never deadlock.
    lock = " ORDER BY jti FOR UPDATE" if store.is_postgres else ""
    with store.transaction() as tx:
        found = tx.query(
            f"SELECT jti, uses_left FROM issued_tokens WHERE jti IN ({marks}){lock}",  # noqa: S608
            ids,
        )
        left = {str(j): int(n) for j, n in found if n is not None}
        if claims.jti not in left:
            return 0
        take = max(0, min(left.values()))
        if take:
            tx.executemany(
                "UPDATE issued_tokens SET uses_left = uses_left - ? WHERE jti = ?",
                [(take, j) for j in sorted(left)],
            )
    return take


def give_back(store: Store, claims: TokenClaims, count: int) -> None:
    """Return uses taken for a credential that could not be made."""
    if claims.uses is None or count <= 0:
        return
    ids = sorted({claims.jti, *claims.chain})
    with store.transaction() as tx:
        tx.executemany(
            "UPDATE issued_tokens SET uses_left = uses_left + ? "
            "WHERE jti = ? AND uses_left IS NOT NULL",
            [(count, j) for j in ids],
        )
