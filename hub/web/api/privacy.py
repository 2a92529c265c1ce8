"""Subject access export and erasure over the API, for admins."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from aiohttp import web

from hub.errors import Forbidden
from hub.privacy.audit import Entry
from hub.privacy.erase import ErasureError, erase_customer
from hub.privacy.subject_export import export_subject
from hub.web.auth import HUB, principal_of
from hub.web.errors import ApiError
from hub.web.params import path_int

routes = web.RouteTableDef()


def _admin(request: web.Request) -> None:
    if not principal_of(request).is_admin:
        raise Forbidden("only admins may export or erase a person's data")


@routes.get("/api/v1/customers/{id}/export")
async def subject_export(request: web.Request) -> web.StreamResponse:
    _admin(request)
    hub = request.app[HUB]
    customer_id = path_int(request)
    await hub.audit.flush()  # the entries about them so far belong in the archive
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / f"customer-{customer_id}.zip"
        await export_subject(hub.db, hub.attachments, customer_id, archive)
        # Committed before the data leaves: an export the audit log does not
        # show never happened (a crash cannot lose the entry from a queue).
        await hub.audit.write_now(
            Entry(
                principal_of(request).user_id,
                "subject_export",
                "customer",
                customer_id,
                customer_id,
                request.remote,
            )
        )
        data = await asyncio.to_thread(archive.read_bytes)
    return web.Response(
        body=data,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="customer-{customer_id}.zip"'},
    )


@routes.post("/api/v1/customers/{id}/erase")
async def erase(request: web.Request) -> web.Response:
    _admin(request)
    hub = request.app[HUB]
    await hub.audit.flush()  # queued entries about them are scrubbed with the rest
    await hub.events.flush()  # and the events sent but not yet stored
    try:
        report = await erase_customer(
            hub.db,
            hub.attachments,
            hub.settings.privacy.suppression_key,
            path_int(request),
            actor_id=principal_of(request).user_id,
            client=request.remote,
        )
    except ErasureError as exc:
        raise ApiError(409, str(exc)) from exc
    return web.json_response(
        {
            "customer_id": report.customer_id,
            "identities": report.identities,
            "history_entries": report.interactions,
            "files": report.files,
            "quarantined_messages": report.quarantined,
            "opted_out_identities_kept_as_hashes": report.suppressed_opted_out,
        }
    )
