"""The email channel: raw RFC 5322 bytes → `InboundContact` (IMAP and SMTP plug in here).

`parse_message` fills `InboundContact.metadata` with (header values decoded;
None when the header is absent)::

    full_text / quoted_text    the whole readable body / its quoted part (text = the new part)
    auto_submitted, precedence, x_autoreply, x_auto_response_suppress, list_id,
    list_unsubscribe           the header values routing classifies by
    return_path                envelope sender; "" for the null sender <>
    content_type, is_dsn       top-level type; multipart/report; report-type=delivery-status
    dsn_text                   (DSNs only) the message/delivery-status part as text
    dsn_original_headers       (DSNs only) returned original's headers, lower-case names, or None
    to, cc, reply_to           lists of addresses
    skipped_attachments        (when any) attachments over the size limit, not stored
    parse_defects              sorted names of what was wrong with the message

This is the contract `routing/classify.py` reads.
"""

from channels.email.attachments import AttachmentStore
from channels.email.parse import UnparseableEmail, parse_message

__all__ = ["AttachmentStore", "UnparseableEmail", "parse_message"]
