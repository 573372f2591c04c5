"""Pipelines: event sequence and fields, statuses, context binding, async and concurrency."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from logbeacon.context import bound, get_context
from logbeacon.integrations.errors import enrich
from logbeacon.integrations.pipeline import Pipeline, pipeline
from logbeacon.sdk import get_logger
from logbeacon.sdk.hooks import add_error_enricher

PIPELINE_LOGGER = "logbeacon.integrations.pipeline"
log = get_logger("jobs.worker")


def own(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events the pipeline itself emitted."""
    return [e for e in logs if e.get("logger") == PIPELINE_LOGGER]


def sequence(logs: list[dict[str, Any]]) -> list[tuple[str, int | None, str | None]]:
    """(event, layer, status) of the pipeline's own events, in order."""
    return [(e["event"], e.get("layer"), e.get("status")) for e in own(logs)]


def complete(logs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pipeline_complete event."""
    [event] = [e for e in logs if e["event"] == "pipeline_complete"]
    return event


def test_successful_run_exact_sequence_and_fields(logs: list[dict[str, Any]]) -> None:
    """start, layer start/complete (metadata merged), skip, complete(success) with a summary."""
    with pipeline(job_id="6929c9", name="enrich_jobs") as p:
        with p.layer(4, "opportunity_mapper") as layer:
            layer.metadata["fit_score"] = 85
            layer.metadata["tokens_used"] = 1200
        p.skip(5, "people_mapper", reason="disabled")
    assert [
        ("pipeline_start", None, "running"),
        ("layer_start", 4, "running"),
        ("layer_complete", 4, "success"),
        ("layer_skip", 5, "skipped"),
        ("pipeline_complete", None, "success"),
    ] == sequence(logs)
    events = own(logs)
    assert all(
        ("6929c9", "6929c9", "enrich_jobs") == (e["job_id"], e["run_id"], e["pipeline"])
        for e in events
    )
    start, layer_start, layer_complete, skip, done = events
    assert ("opportunity_mapper", "opportunity_mapper") == (
        layer_start["layer_name"],
        layer_complete["layer_name"],
    )
    assert (85, 1200) == (layer_complete["fit_score"], layer_complete["tokens_used"])
    assert layer_complete["duration_ms"] >= 0
    assert ("people_mapper", "disabled") == (skip["layer_name"], skip["reason"])
    assert "layer" not in start
    assert "info" == done["level"]
    assert [
        {"layer": 4, "name": "opportunity_mapper", "status": "success"},
        {"layer": 5, "name": "people_mapper", "status": "skipped", "duration_ms": None},
    ] == [
        {k: v for k, v in entry.items() if not (k == "duration_ms" and entry["layer"] == 4)}
        for entry in done["layers"]
    ]
    assert done["layers"][0]["duration_ms"] == layer_complete["duration_ms"]
    assert done["duration_ms"] >= layer_complete["duration_ms"]
    assert "success" == p.status


def test_caught_layer_error_makes_the_run_partial(logs: list[dict[str, Any]]) -> None:
    """A failing layer whose error the body catches ends the pipeline as `partial`."""
    error = ValueError("company 42 not found")
    caught: BaseException | None = None
    with pipeline(job_id="j1") as p:
        try:
            with p.layer(3, "company_researcher") as layer:
                layer.metadata["attempt"] = 1
                raise error
        except ValueError as exc:
            caught = exc
        with p.layer(4, "opportunity_mapper"):
            pass
    assert caught is error
    assert [
        ("pipeline_start", None, "running"),
        ("layer_start", 3, "running"),
        ("layer_error", 3, "error"),
        ("layer_start", 4, "running"),
        ("layer_complete", 4, "success"),
        ("pipeline_complete", None, "partial"),
    ] == sequence(logs)
    layer_error = own(logs)[2]
    assert ("error", "ValueError", "company 42 not found", 1) == (
        layer_error["level"],
        layer_error["error"]["type"],
        layer_error["error"]["message"],
        layer_error["attempt"],
    )
    assert layer_error["error"]["stack"]
    assert layer_error["duration_ms"] >= 0
    done = complete(logs)
    assert ("warn", ["error", "success"]) == (
        done["level"],
        [entry["status"] for entry in done["layers"]],
    )
    assert "error" not in done


def test_uncaught_layer_error_propagates_unchanged_and_ends_in_error(
    logs: list[dict[str, Any]],
) -> None:
    """The very same exception leaves the pipeline; the run ends `error` naming the layer."""
    error = RuntimeError("llm failed")
    with pytest.raises(RuntimeError) as raised, pipeline(job_id="j2") as p:
        with p.layer(6, "generator"):
            raise error
    assert raised.value is error
    assert [
        ("pipeline_start", None, "running"),
        ("layer_start", 6, "running"),
        ("layer_error", 6, "error"),
        ("pipeline_complete", None, "error"),
    ] == sequence(logs)
    done = complete(logs)
    # Logged once with its stack (layer_error); the completion points at the layer.
    assert ("error", 6) == (done["level"], done["failed_layer"])
    assert "error" not in done
    assert "error" == p.status


def test_body_error_outside_a_layer_is_logged_on_completion(logs: list[dict[str, Any]]) -> None:
    """An exception raised between layers ends the run `error` and carries the error object."""
    error = KeyError("config")

    def run() -> None:
        with pipeline(job_id="j3") as p:
            with p.layer(1, "load"):
                pass
            raise error

    with pytest.raises(KeyError) as raised:
        run()
    assert raised.value is error
    done = complete(logs)
    assert ("error", "KeyError") == (done["status"], done["error"]["type"])
    assert "failed_layer" not in done


def test_skip_only_run_is_success(logs: list[dict[str, Any]]) -> None:
    """Skipped layers do not degrade the run's status."""
    with pipeline(job_id="j4") as p:
        p.skip(7, "publisher", reason="dry run")
    assert "success" == complete(logs)["status"]
    [skip] = [e for e in logs if e["event"] == "layer_skip"]
    assert ("skipped", "dry run", "info") == (skip["status"], skip["reason"], skip["level"])


def test_logs_inside_a_layer_carry_the_ids_and_context_is_restored(
    logs: list[dict[str, Any]],
) -> None:
    """User logs inside layers carry job_id/run_id/layer; the caller's context comes back."""
    with bound(request_id="req-1"):
        before = dict(get_context())
        with pipeline(job_id="j5", run_id="run-9", service="scheduler", tenant="acme") as p:
            log.info("between_layers")
            with p.layer(2, "pain_point_miner"):
                log.info("mining", items=3)
            log.info("after_layer")
        after = dict(get_context())
    assert before == after == {"request_id": "req-1"}
    assert {} == dict(get_context())
    mine = {e["event"]: e for e in logs if e["logger"] == "jobs.worker"}
    expected_ids = ("j5", "run-9", "scheduler", "acme", "req-1")
    for name in ("between_layers", "mining", "after_layer"):
        event = mine[name]
        assert expected_ids == (
            event["job_id"],
            event["run_id"],
            event["service"],
            event["tenant"],
            event["request_id"],
        )
    assert (2, "pain_point_miner") == (mine["mining"]["layer"], mine["mining"]["layer_name"])
    assert "layer" not in mine["after_layer"]
    assert "layer" not in mine["between_layers"]


def test_context_restored_after_a_failing_pipeline() -> None:
    """Even when the body raises, nothing the pipeline bound is left behind."""
    with pytest.raises(ZeroDivisionError), pipeline(job_id="j6") as p, p.layer(1, "x"):
        _ = 1 / 0
    assert {} == dict(get_context())


def test_run_id_defaults_to_job_id_and_job_id_is_generated() -> None:
    """run_id is the job id unless given; without a job id a random hex id is made."""
    assert ("abc", "abc") == (Pipeline("abc").job_id, Pipeline("abc").run_id)
    generated = pipeline()
    assert generated.job_id == generated.run_id
    assert 32 == len(generated.job_id)
    assert generated.job_id != pipeline().job_id


def test_metadata_cannot_overwrite_event_fields(logs: list[dict[str, Any]]) -> None:
    """Metadata keys that clash with the event's own fields are kept under `metadata`."""
    with pipeline(job_id="j7") as p, p.layer(1, "x") as layer:
        layer.metadata.update(status="weird", job_id="other", score=9)
    [done] = [e for e in logs if e["event"] == "layer_complete"]
    assert ("success", "j7", 9, {"status": "weird", "job_id": "other"}) == (
        done["status"],
        done["job_id"],
        done["score"],
        done["metadata"],
    )


async def test_async_pipeline_with_async_layers(logs: list[dict[str, Any]]) -> None:
    """`async with pipeline(...)` and `async with p.layer(...)` emit the same events."""
    async with pipeline(job_id="a1") as p:
        async with p.layer(1, "fetch") as layer:
            await asyncio.sleep(0.01)
            log.info("fetched")
            layer.metadata["rows"] = 10
        try:
            async with p.layer(2, "score"):
                raise ValueError("bad row")
        except ValueError:
            pass
    assert [
        ("pipeline_start", None, "running"),
        ("layer_start", 1, "running"),
        ("layer_complete", 1, "success"),
        ("layer_start", 2, "running"),
        ("layer_error", 2, "error"),
        ("pipeline_complete", None, "partial"),
    ] == sequence(logs)
    [fetched] = [e for e in logs if e["event"] == "fetched"]
    assert ("a1", 1) == (fetched["job_id"], fetched["layer"])
    assert own(logs)[2]["duration_ms"] >= 5


async def _run(job_id: str, delays: list[float]) -> str:
    async with pipeline(job_id=job_id) as p:
        for number, delay in enumerate(delays, start=1):
            async with p.layer(number, f"step{number}"):
                await asyncio.sleep(delay)
                log.info("working", expected_job=job_id)
    return p.status


async def test_concurrent_async_pipelines_do_not_mix(logs: list[dict[str, Any]]) -> None:
    """Two pipelines interleaving in separate tasks keep their own ids and layers."""
    statuses = await asyncio.gather(
        _run("left", [0.01, 0.03, 0.01]), _run("right", [0.02, 0.005, 0.02])
    )
    assert ["success", "success"] == statuses
    working = [e for e in logs if e["event"] == "working"]
    assert 6 == len(working)
    assert all(e["job_id"] == e["expected_job"] == e["run_id"] for e in working)
    for job in ("left", "right"):
        mine = [e for e in own(logs) if e["job_id"] == job]
        assert ["pipeline_start"] + ["layer_start", "layer_complete"] * 3 + [
            "pipeline_complete"
        ] == [e["event"] for e in mine]
    # The two runs really interleaved, so separation was tested, not assumed.
    order = [e["job_id"] for e in own(logs)]
    assert order != sorted(order, key=lambda job: job != order[0])
    assert {} == dict(get_context())


def test_layer_in_a_thread_without_copied_context_still_carries_ids(
    logs: list[dict[str, Any]],
) -> None:
    """A layer run in a plain thread binds the pipeline's ids itself."""
    with pipeline(job_id="t1") as p:

        def work() -> None:
            with p.layer(1, "threaded"):
                log.info("in_thread")

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=10)
    [event] = [e for e in logs if e["event"] == "in_thread"]
    assert ("t1", "t1", 1) == (event["job_id"], event["run_id"], event["layer"])
    assert "success" == complete(logs)["status"]


def test_layer_error_is_enriched_by_error_analysis(logs: list[dict[str, Any]]) -> None:
    """With the error enricher registered, layer_error carries category and fingerprint."""
    remove = add_error_enricher(enrich)
    try:
        with pipeline(job_id="e1") as p:
            try:
                with p.layer(3, "researcher"):
                    raise TimeoutError("search timed out")
            except TimeoutError:
                pass
    finally:
        remove()
    [event] = [e for e in logs if e["event"] == "layer_error"]
    assert "timeout" == event["error"]["category"]
    assert 16 == len(event["error"]["fingerprint"])


def test_misuse_fails_with_instructions() -> None:
    """Layers outside the block, reuse, bad layer arguments and reserved fields are refused."""
    p = pipeline(job_id="m1")
    with pytest.raises(RuntimeError, match="inside `with pipeline"), p.layer(1, "early"):
        pass
    with pytest.raises(RuntimeError, match="inside `with pipeline"):
        p.skip(1, "early")
    with p:
        pass
    with pytest.raises(RuntimeError, match="already used"), p:
        pass
    with pytest.raises(RuntimeError, match="finished"):
        p.skip(2, "late")
    with pytest.raises(TypeError, match="layer number"):
        p.layer("4", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layer name"):
        p.layer(4, "")
    with pytest.raises(TypeError, match="status"):
        pipeline(job_id="m2", status="x")
    with pipeline(job_id="m3") as q:
        layer = q.layer(1, "once")
        with layer:
            pass
        with pytest.raises(RuntimeError, match="already entered"), layer:
            pass
