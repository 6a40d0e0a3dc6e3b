"""The token life cycle as a hypothesis state machine, against the real TokenService on
SQLite and on the real PostgreSQL, every answer checked against a small model.

Rules: issue (user, scopes, lifetime, execution, uses, API key), narrow, use (verify and
spend a use, as the gateway does per request), revoke by token, by token id, by execution
(for one user or all), by user and by API key, let time pass (an injected clock), and ask
a replica (its own store on the same database) once its revocation poll is due. After
every step, every token's verdict (valid, expired, revoked) is the model's, and a
token's remaining uses are the model's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import tokens.revocation
import tokens.service
import tokens.signing
from tests import postgres
from tests.clock import FakeClock
from tokens.claims import TokenClaims
from tokens.errors import TokenError
from tokens.masterkey import MasterKeys
from tokens.scopes import Scope
from tokens.service import TokenService
from tokens.store import Store

MK = MasterKeys.parse(MasterKeys.generate())
UNDER_MUTMUT = "MUTANT_UNDER_TEST" in os.environ
UrlGen = Generator[str, None, None]  # yields a fresh database URL, cleans it up on close
LEEWAY = 30
MAX_LIFETIME = 3600
ENTRY_TTL = MAX_LIFETIME + LEEWAY  # how long a revocation entry lives
KEY_MARGIN = tokens.revocation._KEY_MARGIN_S
USERS = ("alice", "bob")
EXECUTIONS = (None, "exec-1", "exec-2")
KEYS = (None, "key0alice0000001", "key0alice0000002", "key0bob000000001")
SCOPES = (
    Scope("read", "/a"),
    Scope("read", "/a/x"),
    Scope("modify", "/a"),
    Scope("create", "/a/y"),
    Scope("read", "/ab"),
)


def covers(held: Scope, wanted: Scope) -> bool:
    """The model's own reading of the WLCG rules (not tokens.scopes)."""
    activity = held.activity == wanted.activity or (
        held.activity == "modify" and wanted.activity == "create"
    )
    path = held.path == "/" or wanted.path == held.path or wanted.path.startswith(held.path + "/")
    return activity and path


@dataclass
class Model:
    token: str
    jti: str
    user: str
    scopes: tuple[Scope, ...]
    exp: int
    execution: str | None
    key: str | None
    uses_left: int | None
    chain: tuple[Model, ...]  # ancestors, root first


class TokenLifecycle(RuleBasedStateMachine):
    tokens = Bundle("tokens")

    def __init__(
        self, open_url: Callable[[], Generator[str, None, None]], clock: FakeClock
    ) -> None:
        super().__init__()
        self._urls = open_url()
        url = next(self._urls)
        self.store = Store.open(url)
        self.store.upgrade()
        self.other = Store.open(url)
        self.clock = clock
        self.svc = self._service(self.store)
        self.replica = self._service(self.other)
        self.all: list[Model] = []
        self.revoked_jtis: set[str] = set()
        # An execution's or a key's revocation is an entry that lives a fixed time (the
        # longest a token minted before it could live); until then it also kills tokens
        # minted after it for the same execution or key (tokens/revocation.py).
        self.revoked_execs: dict[tuple[str | None, str], float] = {}
        self.revoked_keys: dict[str, float] = {}

    @staticmethod
    def _service(store: Store) -> TokenService:
        return TokenService(
            store,
            MK,
            "https://fedgate.test",
            max_lifetime=MAX_LIFETIME,
            default_lifetime=600,
            leeway=LEEWAY,
            revocation_poll=0.5,
        )

    def teardown(self) -> None:
        self.other.close()
        self.store.close()
        self._urls.close()

    # -- the model's verdicts ------------------------------------------------------------

    def expected(self, t: Model) -> str | None:
        if self.clock.wall > t.exp + LEEWAY:
            return "expired"
        if self.is_revoked(t):
            return "revoked"
        return None

    def is_revoked(self, t: Model) -> bool:
        if t.jti in self.revoked_jtis or any(a.jti in self.revoked_jtis for a in t.chain):
            return True
        now = self.clock.wall
        if t.key is not None and self.revoked_keys.get(t.key, -1) > now:
            return True
        if t.execution is not None:
            return (
                self.revoked_execs.get((None, t.execution), -1) > now
                or self.revoked_execs.get((t.user, t.execution), -1) > now
            )
        return False

    def live(self, t: Model) -> bool:
        """Counted by a revocation: not expired past the leeway, not revoked already."""
        return t.exp > self.clock.wall - LEEWAY and not self.is_revoked(t)

    @staticmethod
    def verdict(svc: TokenService, token: str) -> str | None:
        try:
            svc.verify(token)
        except TokenError as e:
            return e.reason
        return None

    # -- rules ---------------------------------------------------------------------------

    @initialize(target=tokens)
    def first(self) -> Model:
        return self._issue("alice", (SCOPES[2], SCOPES[0]), 600, "exec-1", 3, KEYS[1])

    @rule(
        target=tokens,
        user=st.sampled_from(USERS),
        scopes=st.lists(st.sampled_from(SCOPES), min_size=1, max_size=3, unique=True),
        lifetime=st.sampled_from([60, 600, MAX_LIFETIME]),
        execution=st.sampled_from(EXECUTIONS),
        uses=st.sampled_from([None, 1, 2, 3]),
        key=st.sampled_from(KEYS),
    )
    def issue(
        self,
        user: str,
        scopes: list[Scope],
        lifetime: int,
        execution: str | None,
        uses: int | None,
        key: str | None,
    ) -> Model:
        return self._issue(user, tuple(scopes), lifetime, execution, uses, key)

    def _issue(
        self,
        user: str,
        scopes: tuple[Scope, ...],
        lifetime: int,
        execution: str | None,
        uses: int | None,
        key: str | None,
    ) -> Model:
        issued = self.svc.issue(
            user, scopes, lifetime=lifetime, execution_id=execution, uses=uses, key_id=key
        )
        now = int(self.clock.wall)
        assert issued.claims.exp == now + lifetime
        m = Model(
            issued.access_token,
            issued.claims.jti,
            user,
            scopes,
            now + lifetime,
            execution,
            key,
            uses,
            (),
        )
        self.all.append(m)
        return m

    @rule(
        target=tokens,
        parent=tokens,
        scopes=st.lists(st.sampled_from(SCOPES), min_size=1, max_size=2, unique=True),
        lifetime=st.sampled_from([30, 600, MAX_LIFETIME]),
        uses=st.sampled_from([None, 1, 2, 5]),
    )
    def narrow(
        self, parent: Model, scopes: list[Scope], lifetime: int, uses: int | None
    ) -> Model | object:
        now = int(self.clock.wall)
        if now >= parent.exp:
            want: str | None = "expired"
        elif self.is_revoked(parent):
            want = "revoked"
        elif not all(any(covers(h, r) for h in parent.scopes) for r in scopes):
            want = "invalid_scope"
        elif parent.uses_left is not None and parent.uses_left <= 0:
            want = "exhausted"
        elif parent.uses_left is not None and uses is not None and uses > parent.uses_left:
            want = "invalid_request"
        else:
            want = None
        try:
            issued = self.svc.issue(
                parent.user, scopes, lifetime=lifetime, uses=uses, parent=self.claims(parent)
            )
        except TokenError as e:
            assert e.reason == want, (e.reason, want)
            return multiple()
        assert want is None, f"narrowing succeeded where the model says {want}"
        c = issued.claims
        assert c.exp == min(now + lifetime, parent.exp)
        assert c.execution_id == parent.execution and c.key_id == parent.key
        if parent.uses_left is None:
            assert c.uses == uses
        else:
            assert c.uses == (parent.uses_left if uses is None else uses)
        m = Model(
            issued.access_token,
            c.jti,
            parent.user,
            tuple(scopes),
            c.exp,
            parent.execution,
            parent.key,
            c.uses,
            (*parent.chain, parent),
        )
        self.all.append(m)
        return m

    def claims(self, t: Model) -> TokenClaims:
        return self.svc.decode(t.token)

    @rule(t=tokens)
    def use(self, t: Model) -> None:
        """One request: verify, then spend a use (gateway/api/auth.py's order)."""
        want = self.expected(t)
        counted = [x for x in (t, *t.chain) if x.uses_left is not None]
        if (
            want is None
            and t.uses_left is not None
            and any((x.uses_left or 0) <= 0 for x in counted)
        ):
            want = "exhausted"
        try:
            claims = self.svc.verify(t.token)
            if claims.uses is not None:
                self.svc.consume_use(claims)
            got = None
        except TokenError as e:
            got = e.reason
        assert got == want, (got, want)
        if got is None and t.uses_left is not None:
            for x in counted:
                assert x.uses_left is not None
                x.uses_left -= 1

    @rule(t=tokens, as_owner=st.booleans())
    def revoke_token(self, t: Model, as_owner: bool) -> None:
        before = {m.jti for m in self.all if self.live(m)}
        n = self.svc.revoke(token=t.token, user=t.user if as_owner else None)
        self.revoked_jtis.add(t.jti)
        self._check_count(before, n)

    # Two rules aimed where the bugs would hide (a uniform draw reaches them too rarely):
    # a narrowed token spending its ancestors' uses, and an ancestor revoked under it.
    @precondition(lambda self: any(t.chain and t.uses_left is not None for t in self.all))
    @rule(data=st.data())
    def use_a_narrowed_token(self, data: st.DataObject) -> None:
        narrowed = [t for t in self.all if t.chain and t.uses_left is not None]
        self.use(data.draw(st.sampled_from(narrowed)))

    @precondition(lambda self: any(t.chain for t in self.all))
    @rule(data=st.data(), by_id=st.booleans())
    def revoke_an_ancestor(self, data: st.DataObject, by_id: bool) -> None:
        child = data.draw(st.sampled_from([t for t in self.all if t.chain]))
        ancestor = data.draw(st.sampled_from(child.chain))
        if by_id:
            self.revoke_jti(ancestor, ancestor.user)
        else:
            self.revoke_token(ancestor, True)

    @rule(t=tokens, owner=st.sampled_from(USERS))
    def revoke_jti(self, t: Model, owner: str) -> None:
        """By id, confined to ``owner``'s tokens: another user's id revokes nothing."""
        before = {m.jti for m in self.all if self.live(m)}
        n = self.svc.revoke(jti=t.jti, user=owner)
        if owner == t.user:
            self.revoked_jtis.add(t.jti)
        self._check_count(before, n)

    @rule(execution=st.sampled_from(EXECUTIONS[1:]), owner=st.sampled_from((None, *USERS)))
    def revoke_execution(self, execution: str, owner: str | None) -> None:
        before = {m.jti for m in self.all if self.live(m)}
        n = self.svc.revoke(execution_id=execution, user=owner)
        self.revoked_execs[owner, execution] = self.clock.wall + ENTRY_TTL
        self._check_count(before, n)

    @rule(owner=st.sampled_from(USERS))
    def revoke_user(self, owner: str) -> None:
        before = {m.jti for m in self.all if self.live(m)}
        n = self.svc.revoke(user=owner)
        self.revoked_jtis |= {
            m.jti for m in self.all if m.user == owner and m.exp > self.clock.wall - LEEWAY
        }
        self._check_count(before, n)

    @rule(key=st.sampled_from(KEYS[1:]))
    def revoke_key(self, key: str) -> None:
        before = {m.jti for m in self.all if self.live(m)}
        n = self.svc.revoke_api_key(key)
        self.revoked_keys[key] = self.clock.wall + ENTRY_TTL + KEY_MARGIN
        self._check_count(before, n)

    def _check_count(self, before: set[str], n: int) -> None:
        after = {m.jti for m in self.all if self.live(m)}
        assert n == len(before - after), (n, len(before - after))

    @rule(seconds=st.sampled_from([1, 29, 31, 59, 61, 600, MAX_LIFETIME]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def a_replica_agrees_once_its_poll_is_due(self) -> None:
        self.clock.advance(1)
        for t in self.all:
            assert self.verdict(self.replica, t.token) == self.expected(t), t.jti

    @invariant()
    def every_verdict_is_the_models(self) -> None:
        for t in self.all:
            assert self.verdict(self.svc, t.token) == self.expected(t), t.jti
            if t.uses_left is not None and self.clock.wall <= t.exp:
                assert self.svc.remaining_uses(self.claims(t)) == t.uses_left


def _sqlite() -> Generator[str, None, None]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp)}/state.db"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_token_life_cycle_follows_the_model(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock().install(monkeypatch, tokens.service, tokens.revocation, tokens.signing)
    if backend == "sqlite":
        open_url: Callable[[], UrlGen] = _sqlite
    else:
        server = request.getfixturevalue("pg_server")

        def open_url() -> Generator[str, None, None]:
            return postgres.schema_url(server, prefix="sm_")  # type: ignore[return-value]

    run_state_machine_as_test(
        lambda: TokenLifecycle(open_url, clock),  # type: ignore[arg-type,return-value]
        settings=settings(
            # Under mutmut (MUTANT_UNDER_TEST set) each surviving mutant runs it again.
            max_examples=(75 if backend == "sqlite" else 20) // (3 if UNDER_MUTMUT else 1),
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
