"""`crmhub import customers` and `crmhub export customers|history`: exact rows, files and output."""

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
from typing import Any

import pytest
from sqlalchemy import delete, select

from hub import cli
from hub.db import Database
from hub.exporter import ExportError, export_customers, export_history
from hub.importer import ImportFileError, ImportSummary, import_customers
from hub.models import Customer, CustomerTag, Identity, Interaction, Team, User

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


async def rows(db: Database, stmt: Any) -> list[tuple[Any, ...]]:
    async with db.read() as s:
        return [tuple(r) for r in (await s.exec(stmt)).all()]


async def ids(db: Database, table: Any, column: Any) -> dict[str, int]:
    return dict(await rows(db, select(column, table.id)))


async def seed_staff(db: Database) -> None:
    async with db.write() as s:
        s.add_all([User(username="anna"), User(username="ben"), Team(name="Sales")])


async def add_customer(db: Database, *identities: tuple[str, str], **fields: Any) -> int:
    async with db.write() as s:
        customer = Customer(**fields)
        s.add(customer)
        await s.flush()
        assert customer.id is not None
        for n, (kind, value) in enumerate(identities):
            s.add(
                Identity(customer_id=customer.id, kind=kind, value=value, raw=value, primary=n == 0)
            )
        return customer.id


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def run(db: Database, path: Path, **kw: Any) -> ImportSummary:
    return await import_customers(db, path, region="DE", **kw)


CUSTOMER_FIELDS = (
    Customer.kind,
    Customer.name,
    Customer.company,
    Customer.city,
    Customer.notes,
    Customer.custom,
    Customer.owner_id,
    Customer.team_id,
)

BAD_ROWS = """\
Name,Company,Email,Phones,City,Tags,Owner,Team,Notes,x_source
Alice,ACME,Alice@Example.org,030 1234567;+49 171 5550001,Berlin,"vip, news",anna,Sales,"met at
the fair",fair
Bob,,not-an-email,,Hamburg,,,,,
,,,,,,,,,
Carol,,carol@example.org,,,,nobody,,,
,,,,Köln,,,,,
Dave,,ALICE@example.org,,,,,,,
Eve,,eve@example.org,,,,,Marketing,,
Frank,,,abc,,,,,,
Mix,,x@example.org,030 1111111,,,,,,
Gina,,gina@example.org,,,vip,,,,
Xaver Neu,,x@example.org,,Bonn,,ben,,,
Too,many,cells,,,,,,,,,
,Solo GmbH,,,,,,,,
"""


async def test_bad_rows_go_to_the_reject_file_and_the_rest_imports(
    db: Database, tmp_path: Path
) -> None:
    await seed_staff(db)
    x = await add_customer(db, ("email", "x@example.org"), name="Xaver", kind="lead")
    y = await add_customer(db, ("phone", "+49301111111"), name="Yvonne", kind="customer")
    path = write(tmp_path / "people.csv", BAD_ROWS)

    summary = await run(db, path)

    reject_path = tmp_path / "people.csv.rejects.csv"
    assert summary == ImportSummary(3, 1, 8, reject_path)
    assert str(summary) == f"imported 3, updated 1, rejected 8 (rejects in {reject_path})"
    assert reject_path.read_text(encoding="utf-8") == (
        "line,reason,Name,Company,Email,Phones,City,Tags,Owner,Team,Notes,x_source\n"
        "4,not an email address: 'not-an-email',Bob,,not-an-email,,Hamburg,,,,,\n"
        "6,unknown owner 'nobody',Carol,,carol@example.org,,,,nobody,,,\n"
        '7,"no name, company, email or phone",,,,,Köln,,,,,\n'
        "8,email alice@example.org is already used in line 2,Dave,,ALICE@example.org,,,,,,,\n"
        "9,unknown team 'Marketing',Eve,,eve@example.org,,,,,Marketing,,\n"
        "10,no digits in phone number 'abc',Frank,,,abc,,,,,,\n"
        f'11,"matches different customers: {x} by x@example.org, {y} by +49301111111",'
        "Mix,,x@example.org,030 1111111,,,,,,\n"
        "14,12 values for 10 columns,Too,many,cells,,,,,,,,,\n"
    )
    users = await ids(db, User, User.username)
    teams = await ids(db, Team, Team.name)
    assert await rows(db, select(Customer.id, *CUSTOMER_FIELDS).order_by(Customer.id)) == [
        (x, "customer", "Xaver Neu", "", "Bonn", "", {}, users["ben"], None),
        (y, "customer", "Yvonne", "", "", "", {}, None, None),
        (
            x + 2,
            "customer",
            "Alice",
            "ACME",
            "Berlin",
            "met at\nthe fair",
            {"source": "fair"},
            users["anna"],
            teams["Sales"],
        ),
        (x + 3, "customer", "Gina", "", "", "", {}, None, None),
        (x + 4, "customer", "", "Solo GmbH", "", "", {}, None, None),
    ]
    assert await rows(
        db,
        select(
            Identity.customer_id,
            Identity.kind,
            Identity.value,
            Identity.raw,
            Identity.primary,
            Identity.verified,
        ).order_by(Identity.id),
    ) == [
        (x, "email", "x@example.org", "x@example.org", True, True),
        (y, "phone", "+49301111111", "+49301111111", True, True),
        (x + 2, "email", "alice@example.org", "Alice@Example.org", True, True),
        (x + 2, "phone", "+49301234567", "030 1234567", True, True),
        (x + 2, "phone", "+491715550001", "+49 171 5550001", False, True),
        (x + 3, "email", "gina@example.org", "gina@example.org", True, True),
    ]
    assert await rows(
        db,
        select(CustomerTag.customer_id, CustomerTag.tag).order_by(
            CustomerTag.customer_id, CustomerTag.tag
        ),
    ) == [(x + 2, "news"), (x + 2, "vip"), (x + 3, "vip")]


CLEAN = """\
name,email,phone,city,tags,x_tier
Alice,alice@example.org,+49 30 1234567,Berlin,vip,gold
Bob,bob@example.org,,Hamburg,,
"""


async def test_importing_again_updates_and_never_duplicates(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path / "clean.csv", CLEAN)
    assert await run(db, path) == ImportSummary(2, 0, 0)
    before = await rows(db, select(Customer.id, Customer.updated_at, *CUSTOMER_FIELDS))

    assert await run(db, path) == ImportSummary(0, 2, 0)

    # Nothing changed, so nothing was written (not even updated_at).
    assert await rows(db, select(Customer.id, Customer.updated_at, *CUSTOMER_FIELDS)) == before
    assert len(await rows(db, select(Identity.id))) == 3
    assert len(await rows(db, select(CustomerTag.tag))) == 1
    assert not (tmp_path / "clean.csv.rejects.csv").exists()


async def test_a_changed_row_overwrites_present_cells_and_adds_identities_and_tags(
    db: Database, tmp_path: Path
) -> None:
    await run(db, write(tmp_path / "a.csv", CLEAN))
    stale = write(tmp_path / "a.csv.rejects.csv", "left over\n")
    alice = (await ids(db, Customer, Customer.name))["Alice"]
    (before,) = await rows(db, select(Customer.updated_at).where(Customer.id == alice))
    changed = write(
        tmp_path / "a.csv",
        "Phone,EMAIL,City,Tags,X_tier,x_since,Name\n"
        "030 1234567,alice@work.example,Munich,new;vip,,2020,\n",
    )

    assert await run(db, changed) == ImportSummary(0, 1, 0)

    assert not stale.exists()
    assert await rows(db, select(*CUSTOMER_FIELDS).where(Customer.id == alice)) == [
        ("customer", "Alice", "", "Munich", "", {"tier": "gold", "since": "2020"}, None, None)
    ]
    (after,) = await rows(db, select(Customer.updated_at).where(Customer.id == alice))
    assert after > before
    assert await rows(
        db,
        select(Identity.kind, Identity.value, Identity.primary)
        .where(Identity.customer_id == alice)
        .order_by(Identity.id),
    ) == [
        ("email", "alice@example.org", True),
        ("phone", "+49301234567", True),
        ("email", "alice@work.example", False),
    ]
    assert await rows(
        db,
        select(CustomerTag.tag).where(CustomerTag.customer_id == alice).order_by(CustomerTag.tag),
    ) == [("new",), ("vip",)]


async def test_default_team_is_created_and_given_to_new_customers_only(
    db: Database, tmp_path: Path
) -> None:
    await seed_staff(db)
    old = await add_customer(db, ("email", "old@example.org"), name="Old")
    path = write(
        tmp_path / "t.csv",
        "name,email,team\nNew,new@example.org,\nOld,old@example.org,\nSeller,s@example.org,Sales\n",
    )

    assert await run(db, path, default_team="Imported") == ImportSummary(2, 1, 0)

    teams = await ids(db, Team, Team.name)
    assert await rows(db, select(Customer.name, Customer.team_id).order_by(Customer.id)) == [
        ("Old", None),
        ("New", teams["Imported"]),
        ("Seller", teams["Sales"]),
    ]
    assert old == (await ids(db, Customer, Customer.name))["Old"]


JSONL = """\
{"name": "Hana", "emails": ["hana@example.org", "h.ana@example.org"], "phones": "0301234000", \
"postal_code": 10115, "tags": ["a", "b"], "x_score": 7, "x_vip": true, "x_note": null}
not json
[1, 2]
{"name": "Ivo", "email": "bad@", "city": "Rome"}
{"name": ["x"]}

{"NAME": "Jon", "Email": "jon@example.org", "id": 99, "kind": "lead"}
{"name": "Hana 2", "emails": "h.ana@example.org"}
{"Name": "K", "name": "K2"}
"""


async def test_json_lines_import(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path / "people.ndjson", JSONL)
    rejects = tmp_path / "bad.csv"

    assert await run(db, path, rejects=rejects) == ImportSummary(2, 0, 6, rejects)

    assert rejects.read_text(encoding="utf-8") == (
        "line,reason,name,emails,phones,postal_code,tags,x_score,x_vip,x_note,email,city,"
        "NAME,Email,id,kind,Name\n"
        "2,invalid JSON: Expecting value at column 1\n"
        "3,not a JSON object\n"
        "4,not an email address: 'bad@',Ivo,,,,,,,,bad@,Rome,,,,,\n"
        '5,"name: expected text, not list",x,,,,,,,,,,,,,,\n'
        "8,email h.ana@example.org is already used in line 1,Hana 2,h.ana@example.org,"
        ",,,,,,,,,,,,\n"
        "9,a column appears twice,K2,,,,,,,,,,,,,,K\n"
    )
    assert await rows(
        db, select(Customer.name, Customer.postal_code, Customer.custom).order_by(Customer.id)
    ) == [("Hana", "10115", {"score": 7, "vip": True}), ("Jon", "", {})]
    assert await rows(db, select(Identity.value).order_by(Identity.id)) == [
        ("hana@example.org",),
        ("h.ana@example.org",),
        ("+49301234000",),
        ("jon@example.org",),
    ]


async def test_semicolon_csv_with_bom(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffName;Email\nUte;u@example.org\n".encode())
    assert await run(db, path) == ImportSummary(1, 0, 0)
    assert await rows(db, select(Identity.value)) == [("u@example.org",)]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"name,Fax\nA,1\n", "unknown column 'Fax'"),
        (b"name,x_\nA,1\n", "unknown column 'x_'"),
        (b"name,,city\nA,,B\n", "a column has no name"),
        (b"Name,NAME,x_a,x_A\nA,B,,\n", "column 'name' appears twice"),
        (b"", "no header line"),
        (b"name,email\nJos\xe9,j@example.org\n", "line 2 is not UTF-8 text"),
        (b'{"name": "A"}\n{"name": "B", "fax": 1}\n', "unknown column 'fax'"),
    ],
)
async def test_a_file_level_problem_imports_nothing(
    db: Database, tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / ("f.jsonl" if content.startswith(b"{") else "f.csv")
    path.write_bytes(content)
    with pytest.raises(ImportFileError) as exc:
        await run(db, path)
    assert str(exc.value) == f"{path}: {reason}"
    assert await rows(db, select(Customer.id)) == []
    assert os.listdir(tmp_path) == [path.name]


async def test_a_missing_file_and_the_reject_file_as_input(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"nope\.csv: no such file$"):
        await run(db, tmp_path / "nope.csv")
    with pytest.raises(ImportFileError, match=r": cannot read: Is a directory$"):
        await run(db, tmp_path)
    path = write(tmp_path / "x.csv", "name\nA\n")
    with pytest.raises(ImportFileError, match="cannot be the file being imported"):
        await run(db, path, rejects=path)


async def test_progress_bar_when_asked(
    db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run(db, write(tmp_path / "p.csv", CLEAN), progress=True)
    assert "3/3" in capsys.readouterr().err


# -- export --------------------------------------------------------------------


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
    return alice, bob


async def test_export_customers_csv(db: Database) -> None:
    alice, bob = await seed_export(db)
    out = io.StringIO()

    assert await export_customers(db, out, "csv") == 2

    assert out.getvalue() == (
        "id,kind,name,company,emails,phones,postal_code,city,country,industry,tags,owner,team,"
        "notes,x_score,x_tier,x_vip,created_at,updated_at,last_inbound_at,last_outbound_at\n"
        f'{alice},customer,Alice,"ACME, Inc.",alice@example.org;a@work.example,+49301234567,'
        '10115,Berlin,DE,retail,b2b;vip,anna,Sales,"says ""hi""\nline two",7,gold,,'
        "2026-11-01T09:00:00+00:00,2026-11-02T09:00:00+00:00,2026-11-01T10:00:00+00:00,\n"
        f"{bob},lead,Bob,,,+491715550001,,,,,,,,,,,true,"
        "2026-11-01T09:00:00+00:00,2026-11-02T09:00:00+00:00,,\n"
    )


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
        """Without the columns the importer does not take: id, kind and the times."""
        table = list(csv.reader(io.StringIO(text)))
        drop = {"id", "kind", "created_at", "updated_at", "last_inbound_at", "last_outbound_at"}
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
        "sender,recipient,delivery_status,meta\n"
        f'{first},{alice},,email,in,2026-11-01T09:00:00+00:00,"Offer, please","Hello\nthere",'
        "<m1@example.org>,alice@example.org,sales@example.com,,"
        '"{""lang"": ""en"", ""spam"": 0.1}"\n'
        f"{second},{bob},,sms,out,2026-11-01T09:05:00+00:00,,Thanks,SM1,,,delivered,{{}}\n"
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


async def crmhub(argv: list[str]) -> int:
    """The console script, in a thread: it runs its own event loop."""
    return await asyncio.to_thread(cli.main, argv)


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"database": {"url": db_url}}), encoding="utf-8")
    return str(path)


async def test_cli_import_prints_the_summary(
    db: Database, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "c.csv", CLEAN + "Nobody,,,,,\n,broken@,,,,\n")

    assert await crmhub(["-c", config, "import", "customers", str(path), "--team", "Support"]) == 0
    assert capsys.readouterr().out == (
        f"imported 3, updated 0, rejected 1 (rejects in {path}.rejects.csv)\n"
    )
    assert await crmhub(["-c", config, "import", "customers", str(path), "--format", "csv"]) == 0
    assert capsys.readouterr().out == (
        f"imported 1, updated 2, rejected 1 (rejects in {path}.rejects.csv)\n"
    )


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


async def test_values_postgresql_cannot_store_reject_the_row_not_the_import(
    db: Database, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "odd.csv",
        "name,email,phone,notes\n"
        "Nul,nul@example.org,,a\x00b\n"
        "Long,,1234567890123456789012345678901234567890,\n"
        "Fine,fine@example.org,,ok\n",
    )
    summary = await run(db, path)
    assert (summary.imported, summary.updated, summary.rejected) == (1, 0, 2)
    reject_path = tmp_path / "odd.csv.rejects.csv"
    assert reject_path.read_text(encoding="utf-8").splitlines()[1:] == [
        "2,notes: contains a NUL character,Nul,nul@example.org,,a\x00b",
        "3,too many digits for a phone number: '1234567890123456789012345678901234567890',"
        "Long,,1234567890123456789012345678901234567890,",
    ]
    assert await rows(db, select(Customer.name)) == [("Fine",)]
