"""The sandbox's jobs outlive the sandbox that took them: two sandboxes on one jobs folder (two `--sandbox` processes
of a client that starts a server per call) answer alike for every job, whichever took it, and a cancel through one is
seen by the other. The folder keeps only what fal would: jobs past retention go."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.sandbox import Sandbox, SandboxConfig
from server.sandbox.book import JobBook
from server.sandbox.jobs import new_job
from tests.helpers import SEED_INPUT, SEED_MODEL
from tools.catalog.sandbox_rules import CatalogRules

APP = "fal-ai/kling-video"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Sandbox, Sandbox]]:
    """Two sandboxes, each with a key of its own (as two `--sandbox` processes have), on one jobs folder."""
    folder = tmp_path / "sandbox-jobs"
    first = Sandbox(SandboxConfig(queue_seconds=60, run_seconds=60, jobs_dir=folder), CatalogRules())
    second = Sandbox(SandboxConfig(queue_seconds=1, run_seconds=1, jobs_dir=folder), CatalogRules())
    with first, second:
        yield first, second


def _client(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Key {sandbox.config.key}"}, timeout=30)


def test_a_job_taken_by_one_sandbox_is_answered_by_another(pair: tuple[Sandbox, Sandbox]) -> None:
    first, second = pair
    with _client(first) as one, _client(second) as other:
        request_id = one.post(f"/{SEED_MODEL}", json=SEED_INPUT).json()["request_id"]
        status = other.get(f"/{APP}/requests/{request_id}/status")
        # the job keeps the timing it was submitted with (60 s queued), whatever the second sandbox's own
        assert (status.status_code, status.json()["status"]) == (202, "IN_QUEUE")
        assert other.get(f"/{APP}/requests/{request_id}").status_code == 400  # still in progress

        second.finish_now(request_id)  # through the second: the first sees it too
        assert one.get(f"/{APP}/requests/{request_id}/status").json()["status"] == "COMPLETED"
        output = other.get(f"/{APP}/requests/{request_id}").json()
        assert output["video"]["url"].startswith(second.base_url)  # media from the sandbox that answers

        cancelled = one.post(f"/{SEED_MODEL}", json=SEED_INPUT).json()["request_id"]
        assert other.put(f"/{APP}/requests/{cancelled}/cancel").status_code == 202
        answer = one.get(f"/{APP}/requests/{cancelled}/status").json()
        assert (answer["status"], answer["error_type"]) == ("COMPLETED", "cancelled")
    assert set(first.jobs) == set(second.jobs) == {request_id, cancelled}


def test_a_job_past_retention_leaves_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    config = SandboxConfig(queue_seconds=60, run_seconds=60, retention_seconds=0, jobs_dir=folder)
    with Sandbox(config, CatalogRules()) as sandbox, _client(sandbox) as client:
        old = client.post(f"/{SEED_MODEL}", json=SEED_INPUT).json()["request_id"]
        sandbox.finish_now(old)
        assert client.get(f"/{APP}/requests/{old}/status").status_code == 404  # past retention: fal's 404
        new = client.post(f"/{SEED_MODEL}", json=SEED_INPUT).json()["request_id"]
    assert sorted(path.name for path in folder.iterdir()) == [f"{new}.json"]


@pytest.mark.parametrize("folder", [False, True], ids=["memory", "folder"])
def test_the_book_hands_out_copies_and_names_only_plain_ids(tmp_path: Path, folder: bool) -> None:
    book = JobBook(tmp_path / "jobs" if folder else None)
    job = new_job("1b7c0f2e-aaaa-4bbb-8ccc-0123456789ab", SEED_MODEL, {"prompt": "x"}, SandboxConfig())
    book[job.request_id] = job
    changed = book[job.request_id]
    changed.fail_with = "not stored back"
    assert book[job.request_id].fail_with is None  # a change counts once it is stored
    assert book[job.request_id] == job
    for crafted in ("../jobs", "..", "a/b", ".partial-x", ""):
        assert book.get(crafted) is None
    with pytest.raises(ValueError):
        book["../escape"] = new_job("../escape", SEED_MODEL, {}, SandboxConfig())
    assert list(book) == [job.request_id] and len(book) == 1
    del book[job.request_id]
    assert not book
