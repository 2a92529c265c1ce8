"""`crmhub export customers|history`: exact files and output, round trips, the command line."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from hub.data.csv_cells import restore
from hub.data.exporter import ExportError, export_customers, export_history
from hub.data.importer import ImportSummary
from hub.store.db import Database
from hub.store.models import Consent, Customer, CustomerTag, Identity, Interaction, Team, User
from tests.support.imports import (
    add_customer,
    crmhub,
    ids,
    rows,
    run,
    seed_staff,
    write,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


async def seed_export(db: Database) -> tuple[int, int]:
    await seed_staff(db)
    users = await ids(db, User, User.username)
    teams = await ids(db, Team, Team.name)
    times = {"created_at": T0, "updated_at": T0 + timedelta(days=1)}
    alice = await add_customer(
        db,
        ("email", "alice@example.org"),
        ("phone", "+49301234567"),
        ("email", "a@work.example"),
        kind="customer",
        name="Alice",
        company="ACME, Inc.",
        postal_code="10115",
        city="Berlin",
        country="DE",
        industry="retail",
        notes='says "hi"\nline two',
        custom={"tier": "gold", "score": 7},
        owner_id=users["anna"],
        team_id=teams["Sales"],
        last_inbound_at=T0 + timedelta(hours=1),
        **times,
    )
    bob = await add_customer(
        db, ("phone", "+491715550001"), kind="lead", name="Bob", custom={"vip": True}, **times
    )
    gone = await add_customer(db, name="gone", **times)
    async with db.write() as s:
        s.add_all([CustomerTag(customer_id=alice, tag=t) for t in ("vip", "b2b")])
        (await s.get(Customer, gone)).merged_into_id = alice  # type: ignore[union-attr]
        s.add_all(
            [
                Consent(
                    customer_id=bob, channel="sms", state="opted_in", source="form", recorded_at=T0
                ),
                Consent(
                    customer_id=bob,
                    channel="sms",
                    state="opted_out",
                    source="twilio STOP",
                    recorded_at=T0 + timedelta(hours=2),
                ),
            ]
        )
    return alice, bob


async def test_export_customers_csv(db: Database) -> None:
    alice, bob = await seed_export(db)
    out = io.StringIO()

    assert await export_customers(db, out, "csv") == 2

    assert out.getvalue() == (
        "id,kind,name,company,emails,phones,postal_code,city,country,industry,tags,owner,team,"
        "notes,x_score,x_tier,x_vip,consent,created_at,updated_at,last_inbound_at,last_outbound_at\r\n"
        f'{alice},customer,Alice,"ACME, Inc.",alice@example.org;a@work.example,\'+49301234567,'
        '10115,Berlin,DE,retail,b2b;vip,anna,Sales,"says ""hi""\nline two",7,gold,,,'
        "2026-11-01T09:00:00+00:00,2026-11-02T09:00:00+00:00,2026-11-01T10:00:00+00:00,\r\n"
        f"{bob},lead,Bob,,,'+491715550001,,,,,,,,,,,true,"
        '"sms/marketing=opted_out (twilio STOP, 2026-11-01T11:00:00+00:00)",'
        "2026-11-01T09:00:00+00:00,2026-11-02T09:00:00+00:00,,\r\n"
    )


async def test_cells_a_spreadsheet_would_run_are_neutralised_and_import_back(
    db: Database,
) -> None:
    """A name from an email display name like `=HYPERLINK(...)` must not run in
    Excel: cells starting with = + - @ tab or CR get a leading quote (OWASP)."""
    names = ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tTab", "\rCR", "'plain"]
    for name in names:
        await add_customer(db, name=name)
    out = io.StringIO()
    assert await export_customers(db, out, "csv") == len(names)
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert [r["name"] for r in rows] == ["'" + n for n in names[:-1]] + ["'plain"]
    assert [restore(r["name"]) for r in rows] == names


async def test_export_customers_jsonl(db: Database) -> None:
    _alice, bob = await seed_export(db)
    out = io.StringIO()

    assert await export_customers(db, out, "jsonl") == 2

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[1] == {
        "id": bob,
        "kind": "lead",
        "name": "Bob",
        "company": "",
        "emails": [],
        "phones": ["+491715550001"],
        "postal_code": "",
        "city": "",
        "country": "",
        "industry": "",
        "tags": [],
        "owner": None,
        "team": None,
        "notes": "",
        "x_vip": True,
        "consent": [
            {
                "channel": "sms",
                "purpose": "marketing",
                "state": "opted_out",
                "source": "twilio STOP",
                "recorded_at": "2026-11-01T11:00:00+00:00",
            }
        ],
        "created_at": "2026-11-01T09:00:00+00:00",
        "updated_at": "2026-11-02T09:00:00+00:00",
        "last_inbound_at": None,
        "last_outbound_at": None,
    }
    assert lines[0]["emails"] == ["alice@example.org", "a@work.example"]
    assert [lines[0][k] for k in ("x_score", "x_tier", "tags")] == [7, "gold", ["b2b", "vip"]]


async def test_exported_csv_imports_back_to_the_same_customers(
    db: Database, tmp_path: Path
) -> None:
    await seed_export(db)
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        await export_customers(db, f, "csv")
    first = path.read_text(encoding="utf-8")

    # Into the same database: everything matches, nothing is added.
    assert await run(db, path) == ImportSummary(0, 2, 0)
    # Into an empty one (the staff stays): the same customers come back.
    async with db.write() as s:
        for table in (Identity, CustomerTag, Customer):
            await s.exec(delete(table))
    assert await run(db, path) == ImportSummary(2, 0, 0)
    again = io.StringIO()
    await export_customers(db, again, "csv")

    def kept(text: str) -> list[list[str]]:
        """Without the columns the importer does not take: id, kind, consent, the times."""
        table = list(csv.reader(io.StringIO(text)))
        drop = {"id", "kind", "consent", "created_at", "updated_at", "last_inbound_at"}
        drop.add("last_outbound_at")
        keep = [i for i, name in enumerate(table[0]) if name not in drop]
        return [[cells[i] for i in keep] for cells in table]

    assert kept(again.getvalue()) == kept(first)
    assert "\nline two" in again.getvalue()


async def seed_history(db: Database) -> tuple[int, int]:
    alice = await add_customer(db, ("email", "alice@example.org"), name="Alice")
    bob = await add_customer(db, name="Bob")
    async with db.write() as s:
        s.add_all(
            [
                Interaction(
                    customer_id=alice,
                    channel="email",
                    direction="in",
                    occurred_at=T0,
                    subject="Offer, please",
                    text="Hello\nthere",
                    provider_id="<m1@example.org>",
                    sender="alice@example.org",
                    recipient="sales@example.com",
                    meta={"spam": 0.1, "lang": "en"},
                ),
                Interaction(
                    customer_id=bob,
                    channel="sms",
                    direction="out",
                    occurred_at=T0 + timedelta(minutes=5),
                    text="Thanks",
                    provider_id="SM1",
                    delivery_status="delivered",
                ),
            ]
        )
    return alice, bob


async def test_export_history(db: Database) -> None:
    alice, bob = await seed_history(db)
    first, second = (r[0] for r in await rows(db, select(Interaction.id).order_by(Interaction.id)))
    out = io.StringIO()

    assert await export_history(db, out, "csv") == 2

    assert out.getvalue() == (
        "id,customer_id,conversation_id,channel,direction,occurred_at,subject,text,provider_id,"
        "sender,recipient,delivery_status,meta\r\n"
        f'{first},{alice},,email,in,2026-11-01T09:00:00+00:00,"Offer, please","Hello\nthere",'
        "<m1@example.org>,alice@example.org,sales@example.com,,"
        '"{""lang"": ""en"", ""spam"": 0.1}"\r\n'
        f"{second},{bob},,sms,out,2026-11-01T09:05:00+00:00,,Thanks,SM1,,,delivered,{{}}\r\n"
    )
    out = io.StringIO()
    assert await export_history(db, out, "jsonl", customer_id=bob) == 1
    assert json.loads(out.getvalue()) == {
        "id": second,
        "customer_id": bob,
        "conversation_id": None,
        "channel": "sms",
        "direction": "out",
        "occurred_at": "2026-11-01T09:05:00+00:00",
        "subject": "",
        "text": "Thanks",
        "provider_id": "SM1",
        "sender": "",
        "recipient": "",
        "delivery_status": "delivered",
        "meta": {},
    }
    with pytest.raises(ExportError, match="no customer with id 999999"):
        await export_history(db, io.StringIO(), customer_id=999999)


# -- command line --------------------------------------------------------------


async def test_cli_failures_are_one_line(
    db: Database, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "c.csv", "name,fax\nA,1\n")
    assert await crmhub(["-c", config, "import", "customers", str(path)]) == 1
    assert capsys.readouterr().err.endswith(f"crmhub: {path}: unknown column 'fax'\n")
    out = tmp_path / "h.csv"
    assert await crmhub(["-c", config, "export", "history", "--customer", "7", "-o", str(out)]) == 1
    assert capsys.readouterr().err.endswith("crmhub: no customer with id 7\n")
    nowhere = tmp_path / "missing" / "c.csv"
    assert await crmhub(["-c", config, "export", "customers", "-o", str(nowhere)]) == 1
    assert capsys.readouterr().err.endswith(
        f"crmhub: {nowhere}: cannot write: No such file or directory\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["c.csv", "config.yaml"]  # no rejects, no h.csv
    assert await rows(db, select(Customer.id)) == []


async def test_cli_export_to_a_file_and_stdout(
    db: Database, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, _bob = await seed_history(db)
    out = tmp_path / "customers.jsonl"
    assert await crmhub(["-c", config, "export", "customers", "-o", str(out)]) == 0
    assert [json.loads(line)["name"] for line in out.read_text().splitlines()] == ["Alice", "Bob"]
    capsys.readouterr()
    assert await crmhub(["-c", config, "export", "history", "--customer", str(alice)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split(",")[1] == str(alice)


async def test_cli_export_stops_quietly_when_the_reader_goes_away(
    db: Database, config: str, tmp_path: Path
) -> None:
    many = "".join(f"P{i},p{i}@example.org\n" for i in range(3000))
    await run(db, write(tmp_path / "many.csv", "name,email\n" + many))

    def head_1() -> tuple[bytes, int, bytes]:
        argv = [sys.executable, "-m", "hub.cli", "-c", config, "export", "customers"]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()
            proc.stdout.close()  # as `| head -1` does
            return first, proc.wait(), proc.stderr.read()

    first, code, err = await asyncio.to_thread(head_1)
    assert (first[:14], code, err) == (b"id,kind,name,c", 1, b"")
