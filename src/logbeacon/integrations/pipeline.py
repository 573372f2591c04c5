"""Pipeline runs as events: `pipeline_start`, one start/end pair per layer, `pipeline_complete`.

    with logbeacon.pipeline(job_id="6929c9") as p:
        with p.layer(4, "opportunity_mapper") as layer:
            layer.metadata["fit_score"] = 85
        p.skip(5, "people_mapper", reason="disabled")

The events drive a live status view (seed plan 002: pending → running → success/error per
layer) and the server's `GET /v1/runs/{run_id}`: the run's id is the job id unless one is
given. `job_id`, `run_id` (and the pipeline's `name`, `service` and extra fields) are bound
to the logging context for the pipeline's duration, and `layer`/`layer_name` for a layer's,
so every log line written inside carries them; the previous context comes back afterwards.

Statuses: a layer ends `success` or `error` (or is `skipped`); the pipeline ends `success`
(skips allowed), `partial` (a layer failed but the body went on — the caller caught the
error), or `error` (the body raised). Exceptions always propagate unchanged: a layer's error
is logged as `layer_error` and re-raised as the very same object.

A pipeline object belongs to one task or thread (its layers may run in child tasks or
threads; the record of layers is locked). Separate pipelines in concurrent tasks never mix,
because the bound context is per task.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Final

from logbeacon.context import bound
from logbeacon.sdk import get_logger

__all__ = ["Layer", "LayerRecord", "Pipeline", "pipeline"]

_log = get_logger("logbeacon.integrations.pipeline")

# Fields the pipeline's own events set; layer metadata and extra fields may not replace them.
_RESERVED: Final = frozenset(
    {
        "timestamp",
        "level",
        "event",
        "message",
        "logger",
        "event_id",
        "environment",
        "release",
        "service",
        "job_id",
        "run_id",
        "pipeline",
        "layer",
        "layer_name",
        "layers",
        "status",
        "duration_ms",
        "reason",
        "error",
        "exc_info",
        "failed_layer",
        "metadata",
    }
)

LayerRecord = dict[str, Any]
"""One entry of `pipeline_complete.layers`: ``{layer, name, status, duration_ms}``."""


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _check_layer(number: object, name: object) -> None:
    if not isinstance(number, int) or isinstance(number, bool):
        raise TypeError(f"layer number must be an int, got {number!r}")
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"layer name must be a non-empty string, got {name!r}")


def _merge_metadata(fields: dict[str, Any], metadata: Mapping[str, Any]) -> None:
    """Merge a layer's metadata into its event; keys the event owns go under `metadata`."""
    clashing: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in _RESERVED or key in fields:
            clashing[key] = value
        else:
            fields[key] = value
    if clashing:
        fields["metadata"] = clashing


class Layer:
    """One layer of a pipeline: a context manager (sync or async) and a metadata dict.

    Whatever is put in `metadata` while the layer runs is merged into its `layer_complete`
    (or `layer_error`) event, e.g. ``layer.metadata["fit_score"] = 85``.
    """

    __slots__ = ("_binding", "_pipeline", "_record", "_start", "metadata", "name", "number")

    def __init__(self, owner: Pipeline, number: int, name: str) -> None:
        self._pipeline = owner
        self.number = number
        self.name = name
        self.metadata: dict[str, Any] = {}
        self._record: LayerRecord | None = None
        self._start = 0.0
        self._binding: AbstractContextManager[Mapping[str, Any]] | None = None

    @property
    def status(self) -> str:
        """`pending` before the block, then `running`, `success` or `error`."""
        return "pending" if self._record is None else str(self._record["status"])

    def _enter(self) -> Layer:
        if self._record is not None:
            raise RuntimeError(
                f"layer {self.number} ({self.name}) was already entered; call p.layer(...) "
                "again for another run of it"
            )
        self._pipeline._require_active("layer")
        self._record = self._pipeline._add_record(self.number, self.name, "running")
        # The pipeline's fields are bound again here, so logs inside a layer that runs in a
        # thread without a copy of the caller's context still carry job_id and run_id.
        self._binding = bound(**self._pipeline._fields, layer=self.number, layer_name=self.name)
        self._binding.__enter__()
        self._start = time.perf_counter()
        self._pipeline._emit(
            "info", "layer_start", layer=self.number, layer_name=self.name, status="running"
        )
        return self

    def _exit(self, exc: BaseException | None) -> None:
        duration = _elapsed_ms(self._start)
        status = "success" if exc is None else "error"
        fields: dict[str, Any] = {
            "layer": self.number,
            "layer_name": self.name,
            "status": status,
            "duration_ms": duration,
        }
        _merge_metadata(fields, self.metadata)
        try:
            if exc is None:
                self._pipeline._emit("info", "layer_complete", **fields)
            else:
                self._pipeline._emit("error", "layer_error", exc_info=exc, **fields)
        finally:
            binding, self._binding = self._binding, None
            if binding is not None:
                binding.__exit__(None, None, None)
            self._pipeline._finish_record(self._record, status, duration, exc)

    def __enter__(self) -> Layer:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Layer:
        return self._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)


class Pipeline:
    """A pipeline run; use it as ``with``/``async with`` (see `pipeline`)."""

    def __init__(
        self,
        job_id: str | None = None,
        *,
        name: str | None = None,
        run_id: str | None = None,
        service: str | None = None,
        **fields: Any,
    ) -> None:
        for label, value in (("job_id", job_id), ("name", name), ("run_id", run_id)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise TypeError(f"pipeline() {label} must be a non-empty string, got {value!r}")
        if service is not None and (not isinstance(service, str) or not service.strip()):
            raise TypeError(f"pipeline() service must be a non-empty string, got {service!r}")
        reserved = sorted(set(fields) & _RESERVED)
        if reserved:
            raise TypeError(
                f"pipeline() extra field(s) {', '.join(reserved)} are set by the pipeline "
                "itself; pass them under another name"
            )
        self.job_id: str = job_id or uuid.uuid4().hex
        self.run_id: str = run_id or self.job_id
        self.name = name
        bound_fields: dict[str, Any] = {"job_id": self.job_id, "run_id": self.run_id}
        if name is not None:
            bound_fields["pipeline"] = name
        if service is not None:
            bound_fields["service"] = service
        bound_fields.update(fields)
        self._fields: Mapping[str, Any] = bound_fields
        self._lock = threading.Lock()
        self._records: list[LayerRecord] = []
        # (exception, layer number) of failed layers, compared by identity. The objects are
        # kept (not their ids, which a later exception could reuse) until the run ends.
        self._layer_errors: list[tuple[BaseException, int]] = []
        self._state = "new"  # new -> active -> done
        self._status: str | None = None
        self._start = 0.0
        self._binding: AbstractContextManager[Mapping[str, Any]] | None = None

    # ------------------------------------------------------------------ public

    @property
    def status(self) -> str:
        """`running` inside the block, then `success`, `partial` or `error`."""
        if self._status is not None:
            return self._status
        return "running" if self._state == "active" else "pending"

    @property
    def layers(self) -> list[LayerRecord]:
        """A copy of the per-layer summary so far (what `pipeline_complete` carries)."""
        with self._lock:
            return [dict(record) for record in self._records]

    def layer(self, number: int, name: str) -> Layer:
        """A layer context manager: `layer_start`, then `layer_complete` or `layer_error`."""
        _check_layer(number, name)
        return Layer(self, number, name)

    def skip(self, number: int, name: str, *, reason: str | None = None) -> None:
        """Record a layer that will not run: `layer_skip` with status `skipped`."""
        _check_layer(number, name)
        self._require_active("skip")
        self._add_record(number, name, "skipped")
        extra = {"reason": reason} if reason is not None else {}
        self._emit("info", "layer_skip", layer=number, layer_name=name, status="skipped", **extra)

    # ------------------------------------------------------------------ context manager

    def _enter(self) -> Pipeline:
        if self._state != "new":
            raise RuntimeError(
                f"pipeline {self.job_id!r} was already used; create a new pipeline(...) for "
                "each run"
            )
        self._state = "active"
        self._binding = bound(**self._fields)
        self._binding.__enter__()
        self._start = time.perf_counter()
        self._emit("info", "pipeline_start", status="running")
        return self

    def _exit(self, exc: BaseException | None) -> None:
        duration = _elapsed_ms(self._start)
        layers = self.layers
        if exc is not None:
            status = "error"
        elif any(record["status"] == "error" for record in layers):
            status = "partial"
        else:
            status = "success"
        self._status = status
        fields: dict[str, Any] = {"status": status, "duration_ms": duration, "layers": layers}
        level = {"success": "info", "partial": "warn", "error": "error"}[status]
        if exc is not None:
            failed_layer = next((n for err, n in self._layer_errors if err is exc), None)
            if failed_layer is not None:
                # Already logged (with its stack) by layer_error: point at it, don't repeat.
                fields["failed_layer"] = failed_layer
            else:
                fields["exc_info"] = exc
        try:
            self._emit(level, "pipeline_complete", **fields)
        finally:
            self._state = "done"
            self._layer_errors.clear()
            binding, self._binding = self._binding, None
            if binding is not None:
                binding.__exit__(None, None, None)

    def __enter__(self) -> Pipeline:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Pipeline:
        return self._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    # ------------------------------------------------------------------ internals

    def _require_active(self, what: str) -> None:
        if self._state != "active":
            state = "finished" if self._state == "done" else "not started"
            raise RuntimeError(
                f"p.{what}() must be called inside `with pipeline(...) as p:` "
                f"(pipeline {self.job_id!r} is {state})"
            )

    def _emit(self, level: str, event: str, **fields: Any) -> None:
        # The pipeline's fields are passed explicitly, not only through the bound context,
        # so the events are complete even when a layer runs in a thread without it.
        method = {"info": _log.info, "warn": _log.warning, "error": _log.error}[level]
        method(event, **{**self._fields, **fields})

    def _add_record(self, number: int, name: str, status: str) -> LayerRecord:
        record: LayerRecord = {"layer": number, "name": name, "status": status, "duration_ms": None}
        with self._lock:
            self._records.append(record)
        return record

    def _finish_record(
        self,
        record: LayerRecord | None,
        status: str,
        duration_ms: float,
        exc: BaseException | None,
    ) -> None:
        if record is None:
            return
        with self._lock:
            record["status"] = status
            record["duration_ms"] = duration_ms
            if exc is not None:
                self._layer_errors.append((exc, int(record["layer"])))


def pipeline(
    job_id: str | None = None,
    *,
    name: str | None = None,
    run_id: str | None = None,
    service: str | None = None,
    **fields: Any,
) -> Pipeline:
    """Start describing a pipeline run; use as ``with``/``async with pipeline(...) as p``.

    `job_id` defaults to a random hex id, `run_id` to the job id. `name` is logged as
    `pipeline`; `service` and any extra fields are bound to every event inside.
    """
    return Pipeline(job_id, name=name, run_id=run_id, service=service, **fields)
