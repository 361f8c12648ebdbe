"""The admin page in a real browser (headless Chromium, driven with Playwright), as browser-check.sh runs it.

Arguments: the gateway URL, the master key, the Chromium executable, the screenshots folder. Logs in, mints a
key on the free tier, blocks it, sees it blocked; checks that nothing shows without logging in and that the
master key is nowhere but in the page's memory (not in storage, the URL, the HTML or a cookie). Saves a
screenshot of each step. Exits non-zero, naming the check, on the first that fails."""

import json
import sys
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

gateway, master, chromium, shots = sys.argv[1:5]
shots = Path(shots)
shots.mkdir(parents=True, exist_ok=True)


def check(name, condition, detail=""):
    if not condition:
        sys.exit(f"FAILED: {name} {detail}")
    print(f"ok: {name}")


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{gateway}/ui")
    check("only the login form before logging in", page.locator("#login").is_visible() and not page.locator("#admin").is_visible())
    page.screenshot(path=str(shots / "1-login.png"))

    page.fill("#master-key", "sk-wrong")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).not_to_be_empty()
    check("a wrong key is refused", not page.locator("#admin").is_visible())

    page.fill("#master-key", master)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#admin")).to_be_visible()
    expect(page.locator("#tiers")).to_contain_text("free")
    page.screenshot(path=str(shots / "2-logged-in.png"), full_page=True)

    page.select_option("#mint-tier", "free")
    page.fill("#mint-alias", "browser-key")
    page.click("#mint-form button[type=submit]")
    expect(page.locator("#minted-key")).to_contain_text("sk-")
    minted = page.locator("#minted-key").inner_text()
    for _ in range(3):
        body = json.dumps({"model": "assistant", "messages": [{"role": "user", "content": "hi"}]}).encode()
        headers = {"Authorization": f"Bearer {minted}", "Content-Type": "application/json"}
        urllib.request.urlopen(urllib.request.Request(f"{gateway}/v1/chat/completions", body, headers)).read()
    page.click("#refresh")
    expect(page.locator("#usage-totals")).to_contain_text("free: 3 requests")
    check("the usage chart has bars", page.locator("#usage .bar").count() >= 1)
    row = page.locator("#keys tbody tr", has_text="browser-key")
    expect(row).to_have_count(1)
    expect(row.locator(".status")).to_have_text("active")
    page.screenshot(path=str(shots / "3-minted.png"), full_page=True)

    row.locator("button.toggle").click()
    expect(row.locator(".status")).to_have_text("blocked")
    page.screenshot(path=str(shots / "4-blocked.png"), full_page=True)

    page.fill("#search", "no-such-alias")
    expect(page.locator("#keys tbody tr")).to_have_count(0)
    page.fill("#search", "browser")
    expect(page.locator("#keys tbody tr")).to_have_count(1)

    storage = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie])")
    check("the master key is in no storage or cookie", master not in storage, storage)
    check("the master key is not in the URL", master not in page.url)
    check("the master key is not in the HTML", master not in page.content())
    check("no script errors", not errors, errors)

    page.click("#logout")
    check("logging out hides everything", page.locator("#login").is_visible() and not page.locator("#admin").is_visible())
    check("logging out leaves no key in the page", minted not in page.content() and master not in page.content())
    browser.close()

print("browser check passed")
