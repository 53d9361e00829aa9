"""The console in a real browser: Debian's chromium, headless, driven by playwright.

``tipstream console`` runs as a user runs it (a child process, on a free loopback port, on
fresh topics). The test loads the runs page, starts a small run from the form, watches its
status turn ``finished`` in place (the page polls; it is not reloaded), opens the run's
page, checks the curve and the tables, and keeps a screenshot in var/console-screenshot.png.

chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` installs it), never
from playwright's download. No browser is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, async_playwright, expect
from pydantic import SecretStr

from streams.dev.worker_process import child_env, free_port
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "var" / "console-screenshot.png"
TOKEN = "browser-test-token"


def chromium_path() -> str:
    """Debian's chromium (``CONSOLE_TEST_CHROMIUM`` overrides); the test fails without it."""
    for candidate in (
        os.environ.get("CONSOLE_TEST_CHROMIUM", ""),
        "/usr/lib/chromium/chromium",  # the binary behind Debian's /usr/bin/chromium wrapper
        shutil.which("chromium") or "",
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "no chromium: install Debian's (`apt-get install -y chromium`; .ci/run does) or set "
        "CONSOLE_TEST_CHROMIUM to a chromium binary",
        pytrace=False,
    )


@pytest.fixture
async def console_url(topics: Settings, database: str) -> AsyncIterator[str]:
    """``tipstream console`` on a free loopback port with the test's topics and token."""
    settings = topics.model_copy(update={"admin_token": SecretStr(TOKEN)})
    port = free_port()
    child = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, waited for below
        [sys.executable, "-m", "streams.cli", "console", "--port", str(port)],
        env=child_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if child.poll() is not None:
                    pytest.fail(f"tipstream console exited {child.returncode}: {child.stdout}")
                try:
                    async with http.get(f"{url}/api/runs") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail("tipstream console did not answer within 30 s")
        yield url
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        except Exception as err:  # a browser that cannot start fails the test
            pytest.fail(f"chromium ({executable}) did not start: {err}", pytrace=False)
        try:
            yield launched
        finally:
            await launched.close()


async def test_a_run_started_from_the_page_is_watched_to_the_end(
    console_url: str, browser: Browser, pg: asyncpg.Connection
) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await page.goto(f"{console_url}/")
    await expect(page.locator("h1")).to_have_text("Simulation runs")

    # A wrong token: refused with the reason, nothing started.
    form = page.locator("#start-run")
    await form.locator("select[name=policy]").select_option("random")
    await form.locator("input[name=token]").fill("not-the-token")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#error-message")).to_contain_text("needs the admin token")
    await page.go_back()
    await page.reload()

    form = page.locator("#start-run")
    await form.locator("select[name=policy]").select_option("random")
    await form.locator("select[name=personas]").select_option("standard")
    await form.locator("input[name=users]").fill("1")
    await form.locator("input[name=rounds]").fill("6")
    await form.locator("input[name=seed]").fill("4")
    await form.locator("select[name=judge]").select_option("rule")
    await form.locator("select[name=via]").select_option("inprocess")
    await form.locator("input[name=token]").fill(TOKEN)
    await form.locator("button[type=submit]").click()

    started = page.locator("#started a")
    await expect(started).to_have_count(1)
    run_id = await started.inner_text()
    try:
        # Marked, so a reload would show: the status must change in place, by polling.
        await page.evaluate("window.__notReloaded = true")
        row = page.locator(f'#runs tr[data-run-id="{run_id}"]')
        await expect(row).to_have_count(1, timeout=10_000)
        status = row.locator('[data-field="status"]')
        await expect(status).to_have_text("finished", timeout=90_000)
        assert await page.evaluate("window.__notReloaded === true")
        await expect(row.locator('[data-field="progress"] .count')).to_have_text("30 / 30")

        await row.locator("a").first.click()
        await expect(page.locator("h1")).to_have_text(f"Run {run_id}")
        await expect(page.locator('#run [data-field="status"]')).to_have_text("finished")
        await expect(page.locator("#curve svg polyline").first).to_be_visible()
        # 5 personas of the standard set, and "all".
        await expect(page.locator("#personas tbody tr")).to_have_count(6)
        assert await page.locator("#actions tbody tr").count() >= 1
        assert "[" in await page.locator("#personas tbody tr").last.inner_text()  # its interval

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert SCREENSHOT.stat().st_size > 10_000
        stored = await pg.fetchrow("SELECT status, events FROM sim_runs WHERE run_id = $1", run_id)
        assert stored is not None
        assert (stored["status"], stored["events"]) == ("finished", 30)
    finally:
        await pg.execute("DELETE FROM sim_runs WHERE run_id = $1", run_id)
