"""OpenTelemetry and logging, set up once per process.

Traces go to an OTLP collector when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set;
otherwise, when ``ZG_TRACES_FILE`` names a file (``make dev`` points it at
``.zerogate/traces.jsonl``), each finished span is appended to it as one JSON
line. Logs are JSON lines when stderr is not a terminal.

Span names follow the OTel conventions: HTTP server spans ``{method} {route}``
(FastAPI instrumentation), bus spans ``publish <subject>`` and
``process <subject>`` with ``messaging.system=nats``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

_lock = threading.Lock()
_provider: TracerProvider | None = None


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one JSON object per line to a file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [(span.to_json(indent=None) + "\n").encode() for span in spans]
        # One unbuffered append per line: several processes may share the file,
        # and each O_APPEND write lands whole.
        with self._lock, self._path.open("ab", buffering=0) as fh:
            for line in lines:
                fh.write(line)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields become keys."""

    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}.{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._SKIP and not key.startswith("_"):
                plain = isinstance(value, str | int | float | bool | None)
                out[key] = value if plain else str(value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "INFO") -> None:
    """JSON logs outside a terminal, plain lines in one."""
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def setup(service_name: str, *, log_level: str | None = None, logs: bool = True) -> TracerProvider:
    """Set up tracing (and logging) for this process; later calls return the same provider."""
    global _provider
    with _lock:
        if _provider is None:
            _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            traces_file = os.environ.get("ZG_TRACES_FILE")
            if traces_file:
                _provider.add_span_processor(
                    BatchSpanProcessor(JsonLinesSpanExporter(Path(traces_file)))
                )
            _provider.add_span_processor(_fan_out)
            trace.set_tracer_provider(_provider)
            if logs:
                setup_logging(log_level or os.environ.get("ZG_LOG_LEVEL", "INFO"))
        return _provider


class _FanOut(SpanProcessor):
    """Exporters that can be added and removed while the process runs (tests)."""

    def __init__(self) -> None:
        self.processors: list[SpanProcessor] = []

    def on_end(self, span: ReadableSpan) -> None:
        for processor in list(self.processors):
            processor.on_end(span)


_fan_out = _FanOut()


class ExporterHandle:
    """Returned by :func:`add_exporter`; ``shutdown()`` detaches the exporter."""

    def __init__(self, processor: SpanProcessor) -> None:
        self._processor = processor

    def shutdown(self) -> None:
        if self._processor in _fan_out.processors:
            _fan_out.processors.remove(self._processor)
        self._processor.shutdown()


def add_exporter(exporter: SpanExporter) -> ExporterHandle:
    """Send every span from now on to ``exporter`` too (tests use the in-memory one)."""
    setup("zerogate", logs=False)
    processor = SimpleSpanProcessor(exporter)
    _fan_out.processors.append(processor)
    return ExporterHandle(processor)


def shutdown() -> None:
    """Flush and stop exporters (call at process exit)."""
    if _provider is not None:
        _provider.shutdown()


def instrument_fastapi(app: Any) -> None:
    """HTTP server spans ``{method} {route}`` for a FastAPI app."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    provider = _provider or trace.get_tracer_provider()
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)
