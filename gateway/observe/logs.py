"""Logging: one JSON object a line in production, readable lines in development.

Every line written while a request runs carries that request's id. Text that is not the
gateway's own (messages of other libraries, exception texts and stacks) passes through
`redact` first, so a credential that slipped into one is masked; the SDK's and HTTP
libraries' debug output (which prints signed headers) is never enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.config
import re
import time
from typing import Any

import orjson

from gateway.config import Environment, Settings
from gateway.context import current

#: What logging records carry under this attribute is written as fields of the line.
FIELDS = "fields"
#: Libraries whose debug output holds request headers: INFO at most, whatever the level.
_CHATTY = ("botocore", "aiobotocore", "aiohttp", "urllib3", "boto3", "aioboto3", "asyncio")

_REDACTIONS = (
    # Authorization: Bearer x / Basic x; X-API-Key: x; tokens and secrets as key=value.
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)((?:authorization|proxy-authorization|x-api-key|api[_-]?key|x-amz-security-token|"
        r"cookie|set-cookie|aws_secret_access_key|secret_access_key|aws_session_token|"
        r"session_token|secret|password|passwd|token|signature|credential)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
    ),
    # user:password@ in URLs (Redis, proxies).
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@"),
)


def redact(text: str) -> str:
    """The text with credentials masked."""
    text = _REDACTIONS[0].sub(r"\1 [redacted]", text)
    text = _REDACTIONS[1].sub(r"\1[redacted]", text)
    return _REDACTIONS[2].sub(r"\1[redacted]@", text)


def _request_id() -> str | None:
    record = current()
    return None if record is None else record.request_id


class _Clock:
    """UTC timestamps with milliseconds, the seconds part formatted once a second."""

    def __init__(self, seconds_format: str = "%Y-%m-%dT%H:%M:%S", suffix: str = "Z") -> None:
        self._format = seconds_format
        self._suffix = suffix
        self._second = -1
        self._prefix = ""

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime(self._format, time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}{self._suffix}"


class FixedFields:
    """Fields many lines share (an answer-cache hit's, say), their text made once a format.

    Written after a line's own fields, as if they were its last ones; no key is in both.
    """

    __slots__ = ("_texts", "fields")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self._texts: dict[type[LineFormatter], str] = {}

    def text(self, formatter: LineFormatter) -> str:
        """The fields as `formatter` writes them within a line."""
        kind = type(formatter)
        text = self._texts.get(kind)
        if text is None:
            text = self._texts[kind] = formatter.fields_text(self.fields)
        return text


class LineFormatter(logging.Formatter):
    """A line a record: the gateway's own lines of fields, or any other record."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def fields_line(
        self,
        created: float,
        level: str,
        name: str,
        message: str,
        fields: dict[str, Any],
        fixed: FixedFields | None = None,
    ) -> str:
        """A line of the gateway's own fields: every value is built from checked parts."""
        raise NotImplementedError

    def fields_text(self, fields: dict[str, Any]) -> str:
        """Fields as they read within a line (what `FixedFields` keeps)."""
        raise NotImplementedError

    def record_line(self, record: logging.LogRecord) -> str:
        """A line of any other record, its text redacted."""
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] | None = getattr(record, FIELDS, None)
        if fields is not None and not record.exc_info:
            return self.fields_line(
                record.created, record.levelname, record.name, record.getMessage(), fields
            )
        return self.record_line(record)


class JsonFormatter(LineFormatter):
    """One JSON object a line: time, level, logger, message, then the record's fields."""

    def fields_line(
        self,
        created: float,
        level: str,
        name: str,
        message: str,
        fields: dict[str, Any],
        fixed: FixedFields | None = None,
    ) -> str:
        line = {
            "time": self._clock.stamp(created),
            "level": level.lower(),
            "logger": name,
            "message": message,
            **fields,
        }
        text = orjson.dumps(line, default=str).decode()
        if fixed is not None and fixed.fields:
            return f"{text[:-1]},{fixed.text(self)}}}"
        return text

    def fields_text(self, fields: dict[str, Any]) -> str:
        # The members alone, without the braces: they go inside a line's object.
        return orjson.dumps(fields, default=str).decode()[1:-1]

    def record_line(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._clock.stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = _request_id()
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(line, default=str).decode()


#: Fields the console line's message states already: not repeated as key=value.
_HEADLINE_FIELDS = frozenset({"method", "path", "status"})


class ConsoleFormatter(LineFormatter):
    """`time LEVEL logger: message key=value ...`, with the stack below when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock("%Y-%m-%d %H:%M:%S", "")

    def fields_line(
        self,
        created: float,
        level: str,
        name: str,
        message: str,
        fields: dict[str, Any],
        fixed: FixedFields | None = None,
    ) -> str:
        extra = self.fields_text(fields)
        if fixed is not None:
            tail = fixed.text(self)
            if tail:
                extra = f"{extra} {tail}" if extra else tail
        return f"{self._clock.stamp(created)} {level:<7} {name}: {message}  {extra}"

    def fields_text(self, fields: dict[str, Any]) -> str:
        # One pass, no generator: written for every request, answer-cache hits included.
        extra: list[str] = []
        for key, value in fields.items():
            if value is None or key in _HEADLINE_FIELDS:
                continue
            kind = type(value)
            if kind is str:
                if value:
                    extra.append(f"{key}={value}")
            elif kind is list:
                if value:
                    extra.append(f"{key}={_plain(value)}")
            elif value != "" and value != []:
                extra.append(f"{key}={_plain(value)}")
        return " ".join(extra)

    def record_line(self, record: logging.LogRecord) -> str:
        text = f"{self._clock.stamp(record.created)} {record.levelname:<7} {record.name}: "
        text += redact(record.getMessage())
        request_id = _request_id()
        if request_id is not None:
            text = f"{text}  request_id={request_id}"
        if record.exc_info:
            text = f"{text}\n{redact(self.formatException(record.exc_info))}"
        if record.stack_info:
            text = f"{text}\n{redact(self.formatStack(record.stack_info))}"
        return text


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The gateway's handler: writes records, and lines of fields without making a record.

    Lines of fields written from an event loop are held, then written at once:
    `flush_seconds` after the first of them (`PCS_GATEWAY_LOG_FLUSH_SECONDS`), or, with 0,
    when the loop's current round of callbacks is done. Under load one write to the stream
    carries many lines (stderr makes each write a system call, about a request's worth of
    CPU), and a quiet gateway still writes each line within that time. A record written
    meanwhile (a warning, an error) goes after the lines held; so does shutdown's flush.
    """

    #: Characters of held lines past which they are written without waiting for the round.
    MAX_HELD_CHARACTERS = 64 * 1024

    def __init__(self, stream: Any = None, flush_seconds: float = 0.0) -> None:
        super().__init__(stream)
        #: How long lines written from an event loop may be held (0: until the round ends).
        self.flush_seconds = flush_seconds
        self._flush_pending = False
        # Held as text and encoded once a write: one call for many lines.
        self._held: list[str] = []
        self._held_characters = 0

    def write_fields(
        self,
        created: float,
        level: int,
        name: str,
        message: str,
        fields: dict[str, Any],
        fixed: FixedFields | None = None,
    ) -> None:
        """Write one line of fields, as `emit` would write their record."""
        formatter = self.formatter
        if not isinstance(formatter, LineFormatter):
            return
        line = formatter.fields_line(
            created, logging.getLevelName(level), name, message, fields, fixed
        )
        with self.lock:  # type: ignore[union-attr]
            self._held.append(line)
            self._held_characters += len(line)
            if self._held_characters >= self.MAX_HELD_CHARACTERS:
                self._write_held()
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_pending = True
        if self.flush_seconds > 0:
            loop.call_later(self.flush_seconds, self._flush_round)
        else:
            loop.call_soon(self._flush_round)

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_held()
        super().emit(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_held()
        with contextlib.suppress(OSError, ValueError):
            super().flush()

    def _write_held(self) -> None:
        if not self._held:
            return
        terminator = self.terminator
        text = terminator.join(self._held) + terminator
        self._held.clear()
        self._held_characters = 0
        stream = self.stream
        encoding = getattr(stream, "encoding", None) or "utf-8"
        data = text.encode(encoding, "backslashreplace")
        buffer = getattr(stream, "buffer", None)
        # A closed or broken stream never fails a request: the lines are dropped.
        with contextlib.suppress(OSError, ValueError):
            if buffer is not None:
                stream.flush()  # text written before, then these lines
                buffer.write(data)
            else:
                stream.write(data.decode(encoding, "backslashreplace"))

    def _flush_round(self) -> None:
        self._flush_pending = False
        self.flush()


def log_fields(
    logger: logging.Logger,
    level: int,
    message: str,
    fields: dict[str, Any],
    fixed: FixedFields | None = None,
) -> None:
    """Log a line of fields, then the `fixed` ones; straight to the handlers when they are
    all the gateway's own.

    A record costs several microseconds to make and pass through the logging machinery;
    request lines are written for every request, answer-cache hits included.
    """
    if not logger.isEnabledFor(level):
        return
    handlers = _own_handlers(logger)
    if not handlers:
        if fixed is not None:
            fields = {**fields, **fixed.fields}
        logger.log(level, message, extra={FIELDS: fields})
        return
    created = time.time()
    for handler in handlers:
        if level >= handler.level:
            handler.write_fields(created, level, logger.name, message, fields, fixed)


def _own_handlers(logger: logging.Logger) -> list[LineHandler]:
    """The handlers a record of `logger` would reach, when none filters and all are
    `LineHandler`s; else an empty list."""
    handlers: list[LineHandler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return []
        for handler in current.handlers:
            if type(handler) is not LineHandler or handler.filters:
                return []
            handlers.append(handler)
        if not current.propagate:
            break
        current = current.parent
    return handlers


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def uses_json(settings: Settings) -> bool:
    """JSON lines when asked for, or in production when the format is `auto`."""
    if settings.log_format == "auto":
        return settings.environment is Environment.PRODUCTION
    return settings.log_format == "json"


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` document (uvicorn applies it in every worker)."""
    level = settings.log_level.upper()
    formatter = JsonFormatter if uses_json(settings) else ConsoleFormatter
    chatty_level = "INFO" if level == "DEBUG" else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "gateway.observe.logs.LineHandler",
                "formatter": "gateway",
                "stream": "ext://sys.stderr",
                "flush_seconds": settings.log_flush_seconds,
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own lines go through the same handler and format.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            **{name: {"level": chatty_level} for name in _CHATTY},
        },
    }


def configure(settings: Settings) -> None:
    """Apply the settings' logging to this process."""
    logging.config.dictConfig(logging_config(settings))
