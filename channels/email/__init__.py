"""The email channel: raw RFC 5322 bytes → `InboundContact` (IMAP and SMTP plug in here).

`parse_message` turns one message into a contact; `MailReader` (inbound.py)
adds where a mailbox message was read and its reply token. The metadata
they fill in is named by `channels.base.MetaKey` (header values decoded;
None when the header is absent): that enum is the contract routing reads.
"""

from channels.email.attachments import AttachmentStore
from channels.email.errors import LimitExceeded, UnparseableEmail
from channels.email.inbound import MailReader
from channels.email.parse import parse_message

__all__ = ["AttachmentStore", "LimitExceeded", "MailReader", "UnparseableEmail", "parse_message"]
