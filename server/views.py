"""How jobs look from outside: JSON snapshots, SSE event payloads, the public result."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from server.jobs import Job, JobKind, JobStatus


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def download_url(job_id: str, filename: str) -> str:
    return f"/api/v1/download/{job_id}/{filename}"


def public_result(job: Job, raw: Mapping[str, Any], result_type: str,
                  defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The result a client sees, in seed 001's shape plus timings, what was skipped, and every
    result file with its type (the main one first)."""
    files = raw["files"]
    results = [{"resultType": result_type, "downloadUrl": download_url(job.id, files["output"])}]
    results += [{"resultType": kind, "downloadUrl": download_url(job.id, name)}
                for kind, name in files.items() if kind not in ("output", "preview", "damageMask")]
    result: dict[str, Any] = {
        "jobId": job.id,
        "downloadUrl": download_url(job.id, files["output"]),
        "previewUrl": download_url(job.id, files["preview"]),
        "originalSize": job.input_size,
        "processedSize": raw["outputSize"],
        "width": raw["width"],
        "height": raw["height"],
        "outputFormat": raw["outputFormat"],
        "steps": raw["steps"],
        "skipped": list(job.skipped) + list(raw["skipped"]),
        "isGrayscale": raw["isGrayscale"],
        "tone": raw.get("tone"),
        **defaults,
        **raw["measurements"],
        "timings": raw["timings"],
        "results": results,
        "files": sorted(files.values()),
    }
    if "damageMask" in files:  # white = the pixels the job repaired
        result["damageMaskUrl"] = download_url(job.id, files["damageMask"])
    return result


def progress_data(job: Job, queue_position: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"phase": job.phase, "stage": job.stage, "percent": int(job.percent)}
    if queue_position is not None:
        data["queuePosition"] = queue_position
    return data


def terminal_data(job: Job) -> dict[str, Any]:
    if job.status == JobStatus.COMPLETE:
        return {"phase": "complete", "stage": job.stage, "percent": 100, "result": job.result}
    if job.status == JobStatus.FAILED:
        return {"phase": "failed", "stage": job.stage, "percent": int(job.percent), "error": job.error}
    return {"phase": "cancelled", "stage": job.stage, "percent": int(job.percent)}


def snapshot(job: Job, queue_position: int | None, webhook: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "jobId": job.id,
        "kind": job.kind.value,
        # Installs showed their bundle as "tool" before "bundle" existed; clients may still read it.
        "tool": job.bundle if job.kind is JobKind.BUNDLE_INSTALL else job.tool,
        "bundle": job.bundle or None,
        "status": job.status.value,
        "phase": job.phase,
        "stage": job.stage,
        "percent": int(job.percent),
        "queuePosition": queue_position,
        "attempts": job.attempts,
        "worker": job.meta.get("worker"),  # the worker host of the latest attempt, with a broker
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
        "expiresAt": iso(job.expires_at),
        "lastEventId": job.last_event_id,
        "params": job.params,
        "skipped": job.skipped,
        "result": job.result,
        "error": job.error,
        "webhook": webhook,  # its delivery, where the submission gave a webhookUrl (server/webhooks.py)
    }
