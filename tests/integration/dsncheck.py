"""dsncheck: parses a delivery status notification (a bounce) with Python's email package
(policy default), an independent MIME parser, and returns its fields; raises
MalformedReport when it is not a well-formed report.

    rep = dsncheck.parse(raw)                # bytes of the whole message (CRLF or LF)
    rep.per_message["Reporting-MTA"]         # "dns; mx.example.com"
    r = rep.recipient("bob@example.org")     # by Final-Recipient, case-insensitive
    r.action, r.status, r.diagnostic, r.remote_mta, r.will_retry_until, r.original
    rep.returned_type                        # "message/rfc822", "text/rfc822-headers", None
    rep.returned                             # the returned message (EmailMessage) or None
    rep.returned_bytes                       # its octets exactly, from the raw message

What is checked (RFC 6522, RFC 3464): multipart/report with report-type=delivery-status,
two or three parts, the second message/delivery-status with a per-message block and at
least one per-recipient block; each field at most once per block; Reporting-MTA in the
per-message block; Final-Recipient, Action and Status in each recipient block; Action
one of failed, delayed, delivered, relayed, expanded; Status a class.subject.detail
code; the typed fields ("type; value": Reporting-MTA, Remote-MTA, Final-Recipient,
Original-Recipient, Diagnostic-Code, DSN-Gateway, Received-From-MTA) with their type;
the date fields RFC 5322 dates; no parser defects in the report's own parts (the
returned message may have its own: they are in rep.returned_defects); and, when there
is a third part, that it is message/rfc822 or text/rfc822-headers. It does not check
the wording of the human-readable part, or which fields a composer should have written.
Standard library only.
"""
import email
import email.policy
import email.utils
import re

ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
TYPED = ("Reporting-MTA", "Remote-MTA", "Final-Recipient", "Original-Recipient",
         "Diagnostic-Code", "DSN-Gateway", "Received-From-MTA")
DATES = ("Arrival-Date", "Last-Attempt-Date", "Will-Retry-Until")
RETURNED = ("message/rfc822", "text/rfc822-headers")


class MalformedReport(ValueError):
    """The message is not a well-formed delivery status notification."""


class Fields(dict):
    """One block's fields {name as written: value str}, in order; lookups by name are
    case-insensitive (RFC 3464 2.1), equality with a plain dict is exact."""

    def _key(self, name):
        if dict.__contains__(self, name):
            return name
        low = name.lower()
        for k in self:
            if k.lower() == low:
                return k
        return None

    def __getitem__(self, name):
        k = self._key(name)
        if k is None:
            raise KeyError(name)
        return dict.__getitem__(self, k)

    def get(self, name, default=None):
        k = self._key(name)
        return default if k is None else dict.__getitem__(self, k)

    def __contains__(self, name):
        return self._key(name) is not None

    def typed(self, name):
        """The value of a "type; value" field without its type (None when absent)."""
        v = self.get(name)
        return None if v is None else v.split(";", 1)[1].strip()

    # Per-recipient conveniences.
    address = property(lambda self: self.typed("Final-Recipient"))
    original = property(lambda self: self.typed("Original-Recipient"))
    action = property(lambda self: (self.get("Action") or "").lower() or None)
    status = property(lambda self: self.get("Status"))
    diagnostic = property(lambda self: self.get("Diagnostic-Code"))
    remote_mta = property(lambda self: self.typed("Remote-MTA"))
    will_retry_until = property(lambda self: self.get("Will-Retry-Until"))
    last_attempt = property(lambda self: self.get("Last-Attempt-Date"))


def date(value):
    """A date field's value as an aware datetime (ValueError when it is not a date)."""
    try:
        d = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"not an RFC 5322 date: {value!r} ({e})")
    if d is None:
        raise ValueError(f"not an RFC 5322 date: {value!r}")
    return d


def _uncomment(v):
    return re.sub(r"\([^()]*\)", "", v).strip()


def _fields(block, where):
    f = Fields()
    for k, v in block.items():
        if k in f:
            raise MalformedReport(f"{where}: {k} twice")
        f[k] = str(v)
    for k in TYPED:
        v = f.get(k)
        if v is not None and not re.match(r"^\s*[A-Za-z0-9-]+\s*;", v):
            raise MalformedReport(f"{where}: {k} {v!r} is not 'type; value'")
    for k in DATES:
        v = f.get(k)
        if v is not None:
            try:
                date(v)
            except ValueError as e:
                raise MalformedReport(f"{where}: {k}: {e}")
    return f


def _nl(raw):
    return b"\r\n" if b"\r\n" in raw else b"\n"


def raw_parts(raw, boundary):
    """(parts, close): the body parts of a multipart message by a plain split on its
    delimiter lines (RFC 2046 5.1.1), each part's octets from its header on, and what
    follows the last delimiter ("--" CRLF and any epilogue). Raises MalformedReport when
    there is no close delimiter."""
    nl = _nl(raw)
    d = nl + b"--" + boundary.encode("ascii")
    head_end = raw.find(nl + nl)
    if head_end < 0:
        raise MalformedReport("no end of the header section")
    pieces = raw[head_end + len(nl):].split(d)
    if len(pieces) < 2 or not pieces[-1].startswith(b"--"):
        raise MalformedReport("no close delimiter")
    return [p[len(nl):] if p.startswith(nl) else p for p in pieces[1:-1]], pieces[-1]


class Report:
    """A parsed report (see parse())."""

    def __init__(self, raw):
        self.raw = raw
        self.msg = email.message_from_bytes(raw, policy=email.policy.default)
        msg = self.msg
        if msg.get_content_type() != "multipart/report":
            raise MalformedReport(f"top level is {msg.get_content_type()}, "
                                  f"not multipart/report")
        if (msg.get_param("report-type") or "").lower() != "delivery-status":
            raise MalformedReport(f"report-type is {msg.get_param('report-type')!r}")
        self.boundary = msg.get_boundary()
        self.parts = list(msg.iter_parts())
        if not 2 <= len(self.parts) <= 3:
            raise MalformedReport(f"{len(self.parts)} part(s): a report has two or three "
                                  f"(RFC 6522 3)")
        status = self.parts[1]
        if status.get_content_type() != "message/delivery-status":
            raise MalformedReport(f"second part is {status.get_content_type()}")
        own = [msg] + self.parts[:2]
        defects = [(p.get_content_type(), d) for p in own for d in p.defects]
        if defects:
            raise MalformedReport(f"parser defects: {defects}")
        blocks = status.get_payload()
        if not isinstance(blocks, list) or len(blocks) < 2:
            raise MalformedReport("delivery-status needs a per-message and a recipient block")
        self.per_message = _fields(blocks[0], "per-message block")
        if "Reporting-MTA" not in self.per_message:
            raise MalformedReport("per-message block without Reporting-MTA")
        self.recipients = []
        for i, b in enumerate(blocks[1:]):
            where = f"recipient block {i}"
            f = _fields(b, where)
            for k in ("Final-Recipient", "Action", "Status"):
                if k not in f:
                    raise MalformedReport(f"{where}: no {k}")
            if f.action not in ACTIONS:
                raise MalformedReport(f"{where}: Action {f['Action']!r}")
            if not STATUS.match(_uncomment(f["Status"])):
                raise MalformedReport(f"{where}: Status {f['Status']!r}")
            self.recipients.append(f)
        self.text = self.parts[0].get_content() if self.parts[0].get_content_maintype() == \
            "text" else None
        self.raw_parts, self.raw_close = raw_parts(raw, self.boundary)
        self.returned_type = self.returned = self.returned_bytes = None
        self.returned_defects = []
        if len(self.parts) > 2:
            third = self.parts[2]
            self.returned_type = third.get_content_type()
            if self.returned_type not in RETURNED:
                raise MalformedReport(f"third part is {self.returned_type}")
            if len(self.raw_parts) > 2:
                rp, nl = self.raw_parts[2], _nl(raw)
                i = rp.find(nl + nl)
                self.returned_bytes = rp[i + 2 * len(nl):] if i >= 0 else b""
            if self.returned_type == "message/rfc822":
                self.returned = third.get_payload()[0]
            else:
                self.returned = email.message_from_bytes(self.returned_bytes or b"",
                                                         policy=email.policy.default)
            self.returned_defects = [d for p in third.walk() for d in p.defects]

    @property
    def envid(self):
        return self.per_message.get("Original-Envelope-Id")

    @property
    def reporting_mta(self):
        return self.per_message.typed("Reporting-MTA")

    @property
    def arrival_date(self):
        return self.per_message.get("Arrival-Date")

    def recipient(self, address):
        """The block whose Final-Recipient is address (case-insensitive); KeyError if none."""
        for r in self.recipients:
            if (r.address or "").lower() == address.lower():
                return r
        raise KeyError(f"no recipient block for {address}: "
                       f"{[r.address for r in self.recipients]}")

    def actions(self):
        """{final recipient address (lower case): action}."""
        return {(r.address or "").lower(): r.action for r in self.recipients}


def parse(raw):
    """The Report of a DSN's octets; raises MalformedReport."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return Report(raw)


def parse_file(path):
    with open(path, "rb") as f:
        return parse(f.read())


def is_report(raw):
    """True when raw parses as a well-formed DSN."""
    try:
        parse(raw)
        return True
    except MalformedReport:
        return False
