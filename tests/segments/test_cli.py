"""`crmhub segment ...` and `crmhub template ...` against a real database."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import pytest

from hub.cli.main import main
from hub.runtime import Hub
from tests.support.api import Api

pytestmark = pytest.mark.db


def _run(cfg: str, argv: tuple[str, ...]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-c", cfg, *argv])
    return code, out.getvalue(), err.getvalue()


async def _cli(hub: Hub, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database:\n  url: {hub.settings.database.url}\n")
    return await asyncio.to_thread(_run, str(cfg), argv)


async def test_segment_commands(api: Api, hub: Hub, tmp_path: Path) -> None:
    for name, code, tags in (
        ("Anna", "10115", ["vip"]),
        ("Bo", "20095", ["vip"]),
        ("Cy", "10243", []),
    ):
        status, _ = await api.call(
            "POST", "/api/v1/customers", json={"name": name, "postal_code": code, "tags": tags}
        )
        assert status == 201
    flt = '{"postal_code": {"prefix": "10"}, "tags": {"any": ["vip"]}}'
    assert await _cli(hub, tmp_path, "segment", "create", "B VIP", "--filter", flt) == (
        0,
        "segment 1 'B VIP': 1 customers\n",
        "",
    )
    assert await _cli(hub, tmp_path, "segment", "count", "B VIP") == (0, "1\n", "")
    code, out, _ = await _cli(
        hub, tmp_path, "segment", "preview", "--filter", '{"postal_code": {"prefix": "10"}}'
    )
    assert code == 0
    assert [line.split()[:3] for line in out.splitlines()] == [
        ["1", "customer", "Anna"],
        ["3", "customer", "Cy"],
        ["2", "customers", "in"],
    ]
    code, out, err = await _cli(hub, tmp_path, "segment", "count", "--filter", '{"zip": "10"}')
    assert (code, out) == (1, "")
    assert err.startswith("crmhub: filter: unknown field 'zip' (known: city, consent,")
    code, _, err = await _cli(hub, tmp_path, "segment", "create", "x", "--filter", "{oops")
    assert (code, err.startswith("crmhub: the filter is not JSON")) == (1, True)
    assert await _cli(hub, tmp_path, "segment", "delete", "B VIP") == (
        0,
        "segment 1 'B VIP' deleted\n",
        "",
    )
    assert await _cli(hub, tmp_path, "segment", "show", "B VIP") == (
        1,
        "",
        "crmhub: no segment 'B VIP'\n",
    )


async def test_template_commands(api: Api, hub: Hub, tmp_path: Path) -> None:
    status, customer = await api.call("POST", "/api/v1/customers", json={"name": "Anna Schmidt"})
    assert status == 201
    code, out, _ = await _cli(hub, tmp_path, "template", "import-defaults")
    assert code == 0 and "created  newsletter-de" in out
    (tmp_path / "subject.txt").write_text("Hallo {{ first_name | default('du') }}\n")
    (tmp_path / "text.txt").write_text("Text für {{ name }}")
    assert await _cli(
        hub,
        tmp_path,
        "template",
        "create",
        "mine",
        "--subject-file",
        str(tmp_path / "subject.txt"),
        "--text-file",
        str(tmp_path / "text.txt"),
    ) == (0, "template 7 'mine' (email, de) version 1\n", "")
    (tmp_path / "new.txt").write_text("Neu für {{ name }}")
    assert await _cli(
        hub, tmp_path, "template", "version", "mine", "--text-file", str(tmp_path / "new.txt")
    ) == (0, "template 7 'mine' version 2\n", "")
    assert await _cli(
        hub, tmp_path, "template", "preview", "mine", "--customer", str(customer["id"])
    ) == (0, "--- subject ---\nHallo Anna\n--- text ---\nNeu für Anna Schmidt\n", "")
    (tmp_path / "bad.txt").write_text("{{ nope }}")
    await _cli(
        hub, tmp_path, "template", "version", "mine", "--text-file", str(tmp_path / "bad.txt")
    )
    assert await _cli(
        hub, tmp_path, "template", "preview", "mine", "--customer", str(customer["id"])
    ) == (1, "", "crmhub: template mine v3: text: 'nope' is undefined\n")
    code, out, _ = await _cli(hub, tmp_path, "template", "list")
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()] == [  # by name
        "follow-up-de",
        "follow-up-en",
        "mine",
        "newsletter-de",
        "newsletter-en",
        "sms-announcement-de",
        "sms-announcement-en",
    ]
    assert out.splitlines()[2].split() == ["7", "mine", "email", "de", "v3"]
