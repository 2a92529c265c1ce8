"""Body text helpers: charset-tolerant decoding, HTML → readable text, quote separation.

Real mail lies about its charset and many customers' clients send HTML only,
so everything here is total: it returns text for any input and never raises.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from channels.email.errors import LimitExceeded

# Charsets whose decoder accepts every byte: a wrong declaration never fails,
# it silently produces mojibake, so valid multi-byte UTF-8 is preferred over them.
_ANY_BYTE_CHARSETS = frozenset({"iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252"})


def decode_text(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Decode a text part; return the text and whether the declared charset was wrong.

    Order: UTF-8 when the declaration is a single-byte Latin charset but the
    bytes are valid non-ASCII UTF-8 (the common "utf-8 declared iso-8859-1"
    mistake), then the declared charset, then UTF-8, then latin-1 with
    replacement (which cannot fail).
    """
    declared = (charset or "us-ascii").strip().strip('"').lower()
    if declared in _ANY_BYTE_CHARSETS and not data.isascii():
        try:
            return data.decode("utf-8"), True
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(declared), False
    except (LookupError, UnicodeDecodeError):
        pass
    for fallback in ("utf-8", "cp1252"):  # cp1252: Outlook's "latin-1" with curly quotes
        try:
            return data.decode(fallback), True
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1", errors="replace"), True


_BLOCK_TAGS = frozenset(
    {"p", "div", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "pre"}
    | {"blockquote", "hr", "section", "article", "header", "footer"}
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title"})


class _TextExtractor(HTMLParser):
    """Collects text; block elements end lines and <blockquote> lines get "> " prefixes.

    The prefixes let `split_quote` find the quoted part of an HTML-only reply
    (Gmail and Apple Mail quote with <blockquote>) the same way as in plain text.
    """

    def __init__(self, max_chars: int, max_quote_depth: int) -> None:
        super().__init__(convert_charrefs=True)
        self.max_chars = max_chars
        self.max_quote_depth = max_quote_depth
        self.chars = 0
        self.lines: list[str] = []
        self._current: list[str] = []
        self._skip = 0
        self._quote_depth = 0
        self._line_depth = 0

    def _break(self) -> None:
        line = re.sub(r"\s+", " ", "".join(self._current)).strip()
        line = ("> " * self._line_depth + line).rstrip()
        # Checked as the text grows: the quote prefixes make the output grow
        # with the square of the nesting, so the input size alone bounds nothing.
        self.chars += len(line) + 1
        if self.chars > self.max_chars:
            raise LimitExceeded(f"body text over the limit of {self.max_chars} characters")
        self.lines.append(line)
        self._current = []
        self._line_depth = self._quote_depth

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "br":
            self._break()
        elif tag in _BLOCK_TAGS:
            if self._current:
                self._break()
            if tag == "blockquote":
                self._quote_depth += 1
                self._line_depth = self._quote_depth
                if self._quote_depth > self.max_quote_depth:
                    raise LimitExceeded(
                        f"quotes nested over the limit of {self.max_quote_depth} levels"
                    )
            elif tag == "li":
                self._current.append("- ")
        elif tag in ("td", "th") and self._current:
            self._current.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self._break()
            if tag == "blockquote":
                self._quote_depth = max(0, self._quote_depth - 1)
                self._line_depth = self._quote_depth

    def handle_data(self, data: str) -> None:
        if not self._skip:
            if not self._current:
                self._line_depth = self._quote_depth
            self._current.append(data)


# Defaults for callers without limits (tests, tools); the mailbox passes its own.
MAX_TEXT_CHARS = 2_000_000
MAX_QUOTE_DEPTH = 50


def html_to_text(
    html: str, *, max_chars: int = MAX_TEXT_CHARS, max_quote_depth: int = MAX_QUOTE_DEPTH
) -> str:
    """Readable text from HTML with the stdlib parser (no dependency for a best effort).

    Never raises, but for `LimitExceeded` when the text or its quote nesting
    would pass the limits.
    """
    parser = _TextExtractor(max_chars, max_quote_depth)
    try:
        parser.feed(html)
        parser.close()
    except (LimitExceeded, MemoryError):
        raise
    except Exception:  # HTMLParser is lenient; this guards the "never raise" promise
        pass
    parser._break()
    return _tidy("\n".join(parser.lines))


def _tidy(text: str) -> str:
    """Normalise line ends, trailing blanks and runs of empty lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


_ATTRIBUTION_EN = re.compile(r"^\s*On\b.{4,300}\bwrote:\s*$", re.IGNORECASE | re.DOTALL)
_ATTRIBUTION_DE = re.compile(r"^\s*Am\b.{4,300}\bschrieb\b.{0,200}:\s*$", re.IGNORECASE | re.DOTALL)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Originalnachricht)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_FROM_LINE = re.compile(r"^\s*\*?(From|Von):\*?\s+\S", re.IGNORECASE)
_SENT_LINE = re.compile(r"^\s*\*?(Sent|Date|Gesendet|Datum):\*?\s+\S", re.IGNORECASE)
_RULE = re.compile(r"^\s*_{10,}\s*$")


def _quote_start(lines: list[str]) -> tuple[int, bool] | None:
    """Index where the quoted part begins, and whether it is a ">" quote (maybe interleaved)."""
    for i, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            return i, True
        two = line + " " + lines[i + 1] if i + 1 < len(lines) else line
        for pattern in (_ATTRIBUTION_EN, _ATTRIBUTION_DE):
            if pattern.match(line):
                return i, _next_is_chevron(lines, i + 1)
            if i + 1 < len(lines) and pattern.match(two):  # attribution wrapped over two lines
                return i, _next_is_chevron(lines, i + 2)
        if _ORIGINAL.match(line):
            return i, False
        if _FROM_LINE.match(line) and any(_SENT_LINE.match(x) for x in lines[i + 1 : i + 5]):
            return (i - 1 if i > 0 and _RULE.match(lines[i - 1]) else i), False
    return None


def _next_is_chevron(lines: list[str], start: int) -> bool:
    rest = [x for x in lines[start:] if x.strip()]
    return bool(rest) and rest[0].lstrip().startswith(">")


def split_quote(text: str) -> tuple[str, str]:
    """Split a reply into (new part, quoted part); ("text", "") when nothing is quoted.

    Top-posted replies keep what is above the first quote marker. For ">"
    quotes with answers written between them (interleaved), the new part is
    every unquoted line, because cutting at the first ">" would drop answers.
    A message that *starts* with a quote (a plain forward) is not split: an
    empty new part would show nothing in the history.
    """
    text = _tidy(text)
    lines = text.split("\n")
    found = _quote_start(lines)
    if found is None:
        return text, ""
    start, chevron = found
    new = "\n".join(lines[:start]).strip("\n")
    quoted = "\n".join(lines[start:]).strip("\n")
    if chevron:
        tail = lines[start:]
        first_quote = next(i for i, x in enumerate(tail) if x.lstrip().startswith(">"))
        unquoted = [x for x in tail[first_quote:] if not x.lstrip().startswith(">")]
        if any(x.strip() and x.strip() != "--" for x in unquoted) and not _only_signature(unquoted):
            kept = lines[:start] + unquoted
            new = _tidy("\n".join(kept))
            quoted = "\n".join(x for x in tail if x.lstrip().startswith(">"))
    if not new.strip():
        return text, ""
    return new.rstrip(), quoted


def _only_signature(lines: list[str]) -> bool:
    """True when the unquoted lines after a quote are just a "-- " signature block."""
    content = [x for x in lines if x.strip()]
    return bool(content) and content[0].rstrip() == "--"
