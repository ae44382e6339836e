"""Key-change campaigns: the TID roll-over (base date 1993 -> 2014, key revision 1 -> 2).

The proof is the pure STS meter model (``protocols.sts.MeterDecoder``): a meter holding the decoder
key of revision 1 on base date 1993 takes the set the campaign queued, moves to base date 2014 with
its TID memory cleared, and then accepts a credit token made with the revision 2 key and a 2014
TID, and refuses tokens made with the old key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import reactor

from headend.campaigns import (
    CampaignError,
    thd_campaign,
    thd_campaigns,
    thd_create_campaign,
    thd_retry_campaign,
)
from headend.commands import thd_apply_status, thd_due
from headend.followups import thd_command_finished
from headend.keystore import MeterKeys, SealedKeyStore
from headend.store import Database, upgrade
from headend.store.schema import (
    audit_log,
    commands,
    key_campaign_meters,
    key_campaigns,
    meters,
    tokens,
)
from headend.vending import Seller, VendError, thd_vend
from protocols.link import CommandState, CommandStatus
from protocols.sts import (
    BaseDate,
    CreditType,
    Dkga,
    MeterDecoder,
    TokenCoder,
    TokenResult,
    TransferCredit,
    VendingKey,
    tid_of,
)
from tests.headend.seed import (  # noqa: F401 (fixtures)
    GATEWAY,
    KEY1_HEX,
    KEY2_HEX,
    SGC,
    Api,
    add_customer,
    add_keys,
    add_meters,
    add_tariff,
    drn,
    fixture_api,
    fixture_db,
    fixture_issuer,
    fixture_logged,
    fixture_master,
    fixture_migrated,
    meter_decoder,
    open_account,
)
from tests.support.pg_fixture import postgres  # noqa: F401
from tests.support.postgres import Postgres

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC).timestamp()
MOMENT = datetime(2024, 6, 1, 12, 30)  # the wall-clock time of the tokens made after the change
R1, R2, R3, R4, R5, R6 = (drn(n) for n in range(21, 27))
SPARE, OFFLINE, MODERN = drn(31), drn(32), drn(33)
ROLLOVER = {"base_date": 2014, "key_revision": 2}
EXPIRY_S = 86400.0
CASHIER = Seller("carol")


def seed(connection: sa.Connection, master: bytes) -> None:
    """Group "town": R1..R3, R5, R6 on base date 1993 and key revision 1, R4 moved already (2014,
    revision 2). SPARE (1993) in no group; OFFLINE behind no gateway; MODERN on 2014. R1 has an
    account, and bought a token before the campaign."""
    add_keys(connection, master)
    add_meters(connection, R1, R2, R3, R5, R6, group="town", base_date=1993)
    add_meters(connection, R4, group="town", base_date=2014, key_revision=2)
    add_meters(connection, SPARE, base_date=1993)
    add_meters(connection, OFFLINE, gateway=None, base_date=1993)
    add_meters(connection, MODERN, base_date=2014, key_revision=2)
    open_account(connection, add_customer(connection, "Rita"), R1, add_tariff(connection))


@pytest.fixture
def seeded(db: Database, master: bytes) -> None:
    db.run_sync(seed, master)


def create(db: Database, issuer: SealedKeyStore, name: str = "rollover-2024",
           target: dict[str, int] | None = None, **where: Any) -> dict[str, Any]:  # fmt: skip
    if not where:
        where = {"group": "town"}
    view: dict[str, Any] = db.run_sync(thd_create_campaign, issuer, name, target or ROLLOVER,
                                       "kim", NOW, expiry_s=EXPIRY_S, **where)  # fmt: skip
    return view


def the_set(connection: sa.Connection, meter: str) -> tuple[list[Any], Any, Any]:
    """A meter's key change tokens (in set order), its campaign row and its command."""
    rows = connection.execute(
        sa.select(tokens).where(tokens.c.meter_id == meter, tokens.c.kind == "key_change")
        .order_by(tokens.c.set_index)
    ).all()  # fmt: skip
    member = connection.execute(
        sa.select(key_campaign_meters).where(key_campaign_meters.c.meter_id == meter)
    ).one()
    command = connection.execute(
        sa.select(commands).where(commands.c.id == member.command_id)
    ).first()
    return list(rows), member, command


def new_key_token(meter: str, amount: int, moment: datetime = MOMENT) -> str:
    """A credit token made as the head-end makes it after the change: the revision 2 key, a TID on
    the 2014 base date."""
    keys = MeterKeys(meter, SGC, 1, 2, 2, 2014, "sta")
    coder = TokenCoder.derive(VendingKey.from_hex(KEY2_HEX), keys.inputs(Dkga.parse(2)))
    fields = TransferCredit(CreditType.ELECTRICITY, amount=amount, tid=tid_of(moment, 2014), rnd=3)
    return coder.encode(fields).digits


def old_key_token(meter: str, amount: int, moment: datetime = MOMENT) -> str:
    keys = MeterKeys(meter, SGC, 1, 1, 2, 1993, "sta")
    coder = TokenCoder.derive(VendingKey.from_hex(KEY1_HEX), keys.inputs(Dkga.parse(2)))
    fields = TransferCredit(CreditType.ELECTRICITY, amount=amount, tid=tid_of(moment, 1993), rnd=4)
    return coder.encode(fields).digits


def enter_all(meter: MeterDecoder, digits: list[str]) -> list[TokenResult]:
    return [meter.enter(token, now_s=1.0).result for token in digits]


# -- creating a campaign ------------------------------------------------------------------------


def test_a_rollover_campaign_queues_one_set_per_meter_that_the_meter_accepts(
    db: Database, issuer: SealedKeyStore, seeded: None
) -> None:
    # Before: R1 bought a token (key revision 1, base date 1993), and took it.
    sale = db.run_sync(thd_vend, issuer, CASHIER, NOW - 86400, meter_id=R1, amount_minor=1000)
    meter = meter_decoder(R1)  # revision 1, base date 1993, as the factory made it
    assert meter.enter(sale["tokens"][0]).result is TokenResult.ACCEPT
    assert meter.state.credit[CreditType.ELECTRICITY] == 50

    view = create(db, issuer)
    assert view["name"] == "rollover-2024" and view["group"] == "town"
    assert view["target"] == ROLLOVER and view["meters"] == 6
    assert view["states"] == {"pending": 5, "done": 1, "failed": 0, "expired": 0, "rejected": 0}
    assert view["state"] == "running"
    assert sorted(m["meter_id"] for m in view["not_done"]) == [R1, R2, R3, R5, R6]

    rows, member, command = db.run_sync(the_set, R1)
    # a 64-bit STA key: a set of two, subclasses 3 and 4 of the management class (2)
    assert [(r.kind, r.set_index, r.token_class, r.subclass) for r in rows] == [
        ("key_change", 1, 2, 3), ("key_change", 2, 2, 4)]  # fmt: skip
    assert member.state == "pending" and command.type == "token" and command.state == "queued"
    digits = json.loads(command.args)["tokens"]
    assert digits == [r.digits for r in rows]  # ONE command, the set in order
    # R4 is on the target already: done, no tokens, no command
    r4_tokens, r4, r4_command = db.run_sync(the_set, R4)
    assert (r4_tokens, r4.state, r4_command) == ([], "done", None)

    # A token made the new way is refused while the meter holds the old key ...
    early = new_key_token(R1, 100)
    assert meter.enter(early).result is TokenResult.CRC
    # ... the set goes in: the first token is the roll-over one, the second completes the change
    first = meter.enter(digits[0], now_s=1.0)
    assert first.result is TokenResult.FIRST_KCT_ENTERED
    assert first.fields is not None and getattr(first.fields, "rollover", None) is True
    assert getattr(first.fields, "new_krn", None) == 2
    assert meter.enter(digits[1], now_s=2.0).result is TokenResult.ACCEPT
    state = meter.state
    assert state.base_date is BaseDate.Y2014 and state.key_revision_number == 2
    assert set(state.tid_memory) == {0}  # the roll-over cleared the TID memory
    # ... and now the new key with a 2014 TID is accepted, and credit adds up
    assert meter.enter(early).result is TokenResult.ACCEPT
    assert state.credit[CreditType.ELECTRICITY] == 150
    # a token made with the old key no longer is
    assert meter.enter(old_key_token(R1, 10)).result is TokenResult.CRC


def test_every_meter_gets_its_own_set(db: Database, issuer: SealedKeyStore, seeded: None) -> None:
    create(db, issuer)
    sets = {m: json.loads(db.run_sync(the_set, m)[2].args)["tokens"] for m in (R2, R3, R5, R6)}
    assert len({tuple(s) for s in sets.values()}) == 4  # each made from that meter's own key
    for meter_id, digits in sets.items():
        meter = meter_decoder(meter_id)
        assert enter_all(meter, digits) == [TokenResult.FIRST_KCT_ENTERED, TokenResult.ACCEPT]
        assert meter.enter(new_key_token(meter_id, 7)).result is TokenResult.ACCEPT
    # R2's set means nothing to R3
    assert meter_decoder(R3).enter(sets[R2][0]).result is TokenResult.CRC


def test_the_campaign_is_audited_without_token_digits(db: Database, issuer: SealedKeyStore,
                                                      seeded: None) -> None:  # fmt: skip
    view = create(db, issuer)
    rows = db.run_sync(lambda c: c.execute(sa.select(audit_log).order_by(audit_log.c.id)).all())
    actions = [(r.action, r.target) for r in rows if r.action.startswith("key")]
    assert actions == [*(("key_change.issue", f"meter:{m}") for m in (R1, R2, R3, R5, R6)),
                       ("key_campaign.create", f"key_campaign:{view['id']}")]  # fmt: skip
    issue = json.loads(next(r.detail for r in rows if r.action == "key_change.issue"))
    assert issue["from"]["base_date"] == 1993 and issue["to"]["base_date"] == 2014
    assert issue["tokens"] == 2
    digits = db.run_sync(lambda c: c.execute(sa.select(tokens.c.digits)).scalars().all())
    text = " ".join(r.detail for r in rows) + json.dumps(view)
    assert not any(d in text for d in digits)


# -- the gateway's answers, progress and retry --------------------------------------------------


def _status(command_id: str, state: CommandState, code: int | None = None) -> CommandStatus:
    return CommandStatus(GATEWAY, 1, NOW + 60, command_id, state, code)


def report(connection: sa.Connection, meter: str, state: CommandState,
           code: int | None = None) -> None:  # fmt: skip
    """What ingest does with a gateway's status for the meter's campaign command."""
    _, member, _ = the_set(connection, meter)
    outcome = thd_apply_status(connection, _status(member.command_id, state, code), NOW + 60, 1)
    assert outcome is not None
    thd_command_finished(connection, outcome, NOW + 60)


def test_an_applied_set_moves_the_meter_in_the_store_and_the_next_sale_uses_the_new_key(
    db: Database, issuer: SealedKeyStore, seeded: None
) -> None:
    view = create(db, issuer)
    db.run_sync(thd_due, NOW + 1, 1e9, 5)  # published
    db.run_sync(report, R1, CommandState.APPLIED, 1)
    row = db.run_sync(lambda c: c.execute(sa.select(meters).where(meters.c.id == R1)).one())
    assert (row.base_date, row.key_revision, row.sgc, row.tariff_index, row.key_type) == (
        2014, 2, SGC, 1, 2)  # fmt: skip
    progress = db.run_sync(thd_campaign, view["id"])
    assert progress["states"]["done"] == 2 and R1 not in [m["meter_id"]
                                                          for m in progress["not_done"]]  # fmt: skip

    meter = meter_decoder(R1)
    assert enter_all(meter, json.loads(db.run_sync(the_set, R1)[2].args)["tokens"])[-1] \
        is TokenResult.ACCEPT  # fmt: skip
    sale = db.run_sync(thd_vend, issuer, CASHIER, NOW + 3600, meter_id=R1, amount_minor=400)
    assert meter.enter(sale["tokens"][0]).result is TokenResult.ACCEPT
    assert meter.state.credit[CreditType.ELECTRICITY] == 20


def test_progress_and_retry(db: Database, issuer: SealedKeyStore, seeded: None) -> None:
    view = create(db, issuer)
    originals = {m: json.loads(db.run_sync(the_set, m)[2].args)["tokens"]
                 for m in (R2, R3, R5)}  # fmt: skip
    db.run_sync(thd_due, NOW + 1, 1e9, 5)
    db.run_sync(report, R1, CommandState.APPLIED, 1)
    db.run_sync(report, R2, CommandState.FAILED)  # the meter did not answer, for good
    db.run_sync(report, R6, CommandState.REJECTED, 13)  # CRC: the meter holds another key
    db.run_sync(thd_due, NOW + EXPIRY_S + 1, 1e9, 5)  # R3 and R5: expired at the head-end
    # R5's identity read shows the new attributes: its set got in, the status was lost
    db.run_sync(lambda c: c.execute(sa.update(meters).where(meters.c.id == R5).values(
        base_date=2014, key_revision=2)))  # fmt: skip

    progress = db.run_sync(thd_campaign, view["id"])
    assert progress["states"] == {"pending": 0, "done": 2, "failed": 1, "expired": 2,
                                  "rejected": 1}  # fmt: skip
    not_done = {m["meter_id"]: m for m in progress["not_done"]}
    assert set(not_done) == {R2, R3, R5, R6}
    assert (not_done[R6]["state"], not_done[R6]["code"]) == ("rejected", 13)
    assert not_done[R3]["state"] == "expired" and "to type in" in not_done[R3]["detail"]

    retried = db.run_sync(thd_retry_campaign, view["id"], "kim", NOW + EXPIRY_S + 10,
                          expiry_s=EXPIRY_S)  # fmt: skip
    assert retried["requeued"] == [R2, R3] and retried["already_changed"] == [R5]
    assert retried["states"] == {"pending": 2, "done": 3, "failed": 0, "expired": 0,
                                 "rejected": 1}  # fmt: skip
    for meter_id in (R2, R3):
        _, member, command = db.run_sync(the_set, meter_id)
        assert command.state == "queued" and member.detail.startswith("retry of command")
        digits = json.loads(command.args)["tokens"]
        assert digits == originals[meter_id]  # the same set, never a new one
        meter = meter_decoder(meter_id)
        assert enter_all(meter, digits) == [TokenResult.FIRST_KCT_ENTERED, TokenResult.ACCEPT]
    # nothing more to retry while those are on their way
    again = db.run_sync(thd_retry_campaign, view["id"], "kim", NOW + EXPIRY_S + 20)
    assert again["requeued"] == [] and again["already_changed"] == []
    campaigns, total = db.run_sync(thd_campaigns, 10, 0)
    assert total == 1 and campaigns[0]["states"]["pending"] == 2 and "not_done" not in campaigns[0]


def test_a_campaign_is_done_when_every_meter_is(db: Database, issuer: SealedKeyStore,
                                                seeded: None) -> None:  # fmt: skip
    view = create(db, issuer, meter_ids=[SPARE, MODERN])
    assert view["states"]["done"] == 1 and view["state"] == "running"
    db.run_sync(thd_due, NOW + 1, 1e9, 5)
    db.run_sync(report, SPARE, CommandState.APPLIED, 1)
    assert db.run_sync(thd_campaign, view["id"])["state"] == "done"


# -- refusals -----------------------------------------------------------------------------------


def _counts(connection: sa.Connection) -> tuple[int, ...]:
    return tuple(
        connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        for table in (key_campaigns, key_campaign_meters, tokens, commands, audit_log)
    )


def test_the_target_key_must_be_in_the_key_store(db: Database, issuer: SealedKeyStore,
                                                 seeded: None) -> None:  # fmt: skip
    before = db.run_sync(_counts)
    with pytest.raises(CampaignError) as raised:
        create(db, issuer, target={"base_date": 2014, "key_revision": 3})
    assert raised.value.status == 409
    assert str(raised.value) == (
        "the target vending key (supply group 123456, key revision 3, sta) is not in the key "
        "store: import it first (POST /api/v1/keys)"
    )
    assert db.run_sync(_counts) == before


@pytest.mark.parametrize(
    ("target", "where", "status", "message"),
    [
        ({"base_date": 1993}, {"meter_ids": [MODERN]}, 409, "cannot move back to 1993"),
        ({"base_date": 2035, "key_revision": 2}, {"meter_ids": [SPARE]}, 409,
         "one step at a time"),
        (ROLLOVER, {"meter_ids": [OFFLINE]}, 409, "behind no gateway"),
        (ROLLOVER, {"meter_ids": [SPARE, drn(99)]}, 404, f"no such meters: {drn(99)}"),
        (ROLLOVER, {"group": "nowhere"}, 404, "no meter group 'nowhere'"),
        (ROLLOVER, {"meter_ids": []}, 422, "meter_ids is empty"),
        (ROLLOVER, {"group": "town", "meter_ids": [SPARE]}, 422, "a meter group or a list"),
        ({"key_revision": 2}, {"meter_ids": [SPARE]}, 422, "base_date is required"),
        ({"base_date": 2000}, {"meter_ids": [SPARE]}, 422, "must be 1993, 2014 or 2035"),
        ({"base_date": 2014, "algorithm": 1}, {"meter_ids": [SPARE]}, 422, "unknown attributes"),
        ({"base_date": 2014, "key_revision": 10}, {"meter_ids": [SPARE]}, 422, "1..9"),
    ],
)  # fmt: skip
def test_a_campaign_is_refused(db: Database, issuer: SealedKeyStore, seeded: None,
                               target: dict[str, int], where: dict[str, Any], status: int,
                               message: str) -> None:  # fmt: skip
    before = db.run_sync(_counts)
    with pytest.raises(CampaignError, match=message) as raised:
        create(db, issuer, target=target, **where)
    assert raised.value.status == status
    assert db.run_sync(_counts) == before


def test_a_meter_is_in_one_change_at_a_time(db: Database, issuer: SealedKeyStore,
                                            seeded: None) -> None:  # fmt: skip
    create(db, issuer, "first", meter_ids=[SPARE])
    with pytest.raises(CampaignError, match="exists already"):
        create(db, issuer, "first", meter_ids=[R1])
    with pytest.raises(CampaignError, match=f"on its way already: {SPARE} \\(campaign 'first'\\)"):
        create(db, issuer, "second", meter_ids=[SPARE])


def test_a_meter_whose_set_the_gateway_holds_is_still_in_its_campaign(
    db: Database, issuer: SealedKeyStore, seeded: None
) -> None:
    """The gateway's "received" is no outcome: the meter stays pending, out of another campaign,
    and no sale is made on the old key while the set is on its way."""
    create(db, issuer, "first", meter_ids=[R1])
    db.run_sync(thd_due, NOW + 1, 1e9, 5)
    db.run_sync(report, R1, CommandState.RECEIVED)
    _, member, _ = db.run_sync(the_set, R1)
    assert member.state == "pending"
    with pytest.raises(CampaignError, match=f"on its way already: {R1}"):
        create(db, issuer, "second", meter_ids=[R1])
    with pytest.raises(VendError, match="a key change is on its way"):
        db.run_sync(thd_vend, issuer, CASHIER, NOW + 120, meter_id=R1, amount_minor=1000)


def test_no_token_is_made_before_the_meters_base_date(db: Database, issuer: SealedKeyStore,
                                                      seeded: None) -> None:  # fmt: skip
    db.run_sync(lambda c: c.execute(sa.update(meters).where(meters.c.id == R1)
                                    .values(base_date=2035)))  # fmt: skip
    before = db.run_sync(_counts)
    with pytest.raises(VendError, match=f"meter {R1} cannot be given a token now: .* before base "
                                        "date 2035-01-01") as raised:  # fmt: skip
        db.run_sync(thd_vend, issuer, CASHIER, NOW, meter_id=R1, amount_minor=1000)
    assert raised.value.status == 409
    assert db.run_sync(_counts) == before


def test_the_first_sale_after_a_rollover_has_a_2014_tid(db: Database, issuer: SealedKeyStore,
                                                       seeded: None) -> None:  # fmt: skip
    db.run_sync(thd_vend, issuer, CASHIER, NOW - 86400, meter_id=R1, amount_minor=1000)
    create(db, issuer, meter_ids=[R1])
    db.run_sync(thd_due, NOW + 1, 1e9, 5)
    db.run_sync(report, R1, CommandState.APPLIED, 1)
    later = NOW + 3600
    db.run_sync(thd_vend, issuer, CASHIER, later, meter_id=R1, amount_minor=200)
    tid = db.run_sync(lambda c: c.execute(  # the newest token's
        sa.select(tokens.c.tid).where(tokens.c.meter_id == R1)
        .order_by(tokens.c.id.desc()).limit(1)).scalar_one())  # fmt: skip
    assert tid == tid_of(datetime.fromtimestamp(later, UTC).replace(tzinfo=None), 2014)


# -- over HTTP ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_campaigns_over_http(api: Api, master: bytes) -> None:
    api.app.db.run_sync(seed, master)
    body = {"name": "rollover", "group": "town", "target": ROLLOVER}
    reply = await api.call("POST", "/api/v1/key-campaigns", body, role="supervisor")
    assert reply.status == 403 and "'keys'" in reply.message
    reply = await api.call("POST", "/api/v1/key-campaigns", body | {"meter_ids": [R1]})
    assert reply.status == 422 and "give group or meter_ids" in reply.body.decode()
    reply = await api.call("POST", "/api/v1/key-campaigns",
                           body | {"target": {"base_date": 2000}})  # fmt: skip
    assert reply.status == 422 and "target.base_date" in reply.body.decode()
    reply = await api.call("POST", "/api/v1/key-campaigns",
                           body | {"target": {"base_date": 2014, "key_revision": 3}})  # fmt: skip
    assert reply.status == 409
    assert "supply group 123456, key revision 3, sta" in reply.message

    reply = await api.call("POST", "/api/v1/key-campaigns", body)
    assert reply.status == 201, reply.body
    created = reply.json
    assert created["states"]["pending"] == 5 and api.app.dispatcher.pokes == 1
    digits = api.app.db.run_sync(lambda c: c.execute(sa.select(tokens.c.digits)).scalars().all())
    assert digits and not any(d in reply.body.decode() for d in digits)

    listed = (await api.call("GET", "/api/v1/key-campaigns")).json
    assert listed["total"] == 1 and listed["items"][0]["id"] == created["id"]
    one = await api.call("GET", f"/api/v1/key-campaigns/{created['id']}")
    assert one.json["states"] == created["states"] and len(one.json["not_done"]) == 5
    assert (await api.call("GET", "/api/v1/key-campaigns/999")).status == 404
    assert (await api.call("GET", "/api/v1/key-campaigns/x")).status == 404

    api.app.db.run_sync(thd_due, NOW + EXPIRY_S * 2, 1e9, 5)  # never confirmed: all expire
    reply = await api.call("POST", f"/api/v1/key-campaigns/{created['id']}/retry")
    assert reply.status == 200, reply.body
    assert reply.json["requeued"] == [R1, R2, R3, R5, R6]
    assert reply.json["states"]["pending"] == 5 and api.app.dispatcher.pokes == 2


@pytest.mark.integration
def test_a_campaign_on_postgresql(postgres: Postgres, master: bytes) -> None:  # noqa: F811
    database = Database(reactor, postgres.create_database("campaigns"))
    try:
        upgrade(database.engine)
        issuer = SealedKeyStore(master)
        database.run_sync(seed, master)
        view = create(database, issuer)
        assert view["states"] == {"pending": 5, "done": 1, "failed": 0, "expired": 0,
                                  "rejected": 0}  # fmt: skip
        database.run_sync(thd_due, NOW + 1, 1e9, 5)
        database.run_sync(report, R1, CommandState.APPLIED, 1)
        database.run_sync(report, R2, CommandState.FAILED)
        meter = meter_decoder(R1)
        digits = json.loads(database.run_sync(the_set, R1)[2].args)["tokens"]
        assert enter_all(meter, digits) == [TokenResult.FIRST_KCT_ENTERED, TokenResult.ACCEPT]
        retried = database.run_sync(thd_retry_campaign, view["id"], "kim", NOW + 120)
        assert retried["requeued"] == [R2]
        assert retried["states"] == {"pending": 4, "done": 2, "failed": 0, "expired": 0,
                                     "rejected": 0}  # fmt: skip
        with pytest.raises(CampaignError, match="on its way already"):
            create(database, issuer, "again", meter_ids=[R3])
    finally:
        database.stop()
