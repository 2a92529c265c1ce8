"""`crmhub import customers`: exact rows, reject files and output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.data.importer import ImportFileError, ImportSummary
from hub.store.db import Database
from hub.store.models import Customer, CustomerTag, Identity, Team, User
from tests.support.imports import (
    add_customer,
    crmhub,
    ids,
    rows,
    run,
    seed_staff,
    write,
)

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
