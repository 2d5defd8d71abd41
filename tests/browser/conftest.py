"""Browser tests of the console: real headless Chromium (Debian's `chromium` and `chromium-driver`)
driven by Selenium against a Berth the Rust e2e test `console_browser` started (apiserver, a real
containerd node, the groups), which passes what it made in `BERTH_CONSOLE_*` variables.

Every test gets a browser of its own (one tab, so its own sessionStorage); a test that fails leaves
`target/artifacts/console/<test>.png` and `<test>.log` (the page's console log) behind."""

import json
import os
import re
import ssl
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver  # noqa: E402  (after SE_AVOID_STATS: no telemetry, no downloads)
from selenium.webdriver.chrome.service import Service  # noqa: E402

from ui import browser_log  # noqa: E402

CHROMIUM = os.environ.get("BERTH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BERTH_CHROMEDRIVER", "/usr/bin/chromedriver")


def artifacts_dir() -> Path:
    return Path(os.environ.get("BERTH_CONSOLE_ARTIFACTS", ROOT / "target" / "artifacts" / "console"))


class Api:
    """Berth's REST API as a script holds it: endpoint, CA, one token."""

    def __init__(self, endpoint: str, ca_file: str, token: str):
        self.endpoint = endpoint
        self.context = ssl.create_default_context(cafile=ca_file)
        self.token = token

    def call(self, method: str, path: str, body=None):
        """(status, JSON body or None)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.endpoint + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=60) as answer:
                text = answer.read()
                return answer.status, json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, text.decode(errors="replace")

    def text(self, path: str) -> str:
        request = urllib.request.Request(self.endpoint + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, context=self.context, timeout=60) as answer:
            return answer.read().decode()


@dataclass
class Stack:
    """What the Rust driver started and made."""

    endpoint: str
    ca_file: str
    token: str
    other_token: str
    operator_token: str
    subscription: str
    resource_group: str
    ticker: str
    tagged: str
    stoppable: str
    image: str
    hostile: str
    node: str

    def api(self, token=None) -> Api:
        return Api(self.endpoint, self.ca_file, token or self.token)

    def group_path(self, name: str, rg=None, sub=None) -> str:
        return (f"/subscriptions/{sub or self.subscription}/resourceGroups/{rg or self.resource_group}"
                f"/providers/Microsoft.ContainerInstance/containerGroups/{name}")

    def group_hash(self, name: str, *rest: str) -> str:
        return "#/" + "/".join(["groups", self.subscription, self.resource_group, name, *rest])


VARIABLES = {
    "endpoint": "BERTH_CONSOLE_ENDPOINT",
    "ca_file": "BERTH_CONSOLE_CA",
    "token": "BERTH_CONSOLE_TOKEN",
    "other_token": "BERTH_CONSOLE_OTHER_TOKEN",
    "operator_token": "BERTH_CONSOLE_OPERATOR_TOKEN",
    "subscription": "BERTH_CONSOLE_SUBSCRIPTION",
    "resource_group": "BERTH_CONSOLE_RESOURCE_GROUP",
    "ticker": "BERTH_CONSOLE_TICKER",
    "tagged": "BERTH_CONSOLE_TAGGED",
    "stoppable": "BERTH_CONSOLE_STOPPABLE",
    "image": "BERTH_CONSOLE_IMAGE",
    "hostile": "BERTH_CONSOLE_HOSTILE",
    "node": "BERTH_CONSOLE_NODE",
}


@pytest.fixture(scope="session")
def stack() -> Stack:
    missing = [v for v in VARIABLES.values() if not os.environ.get(v)]
    if missing:
        pytest.skip("run by the Rust e2e test console_browser (cargo test -p berth-tests --test e2e "
                    f"console_browser); missing {', '.join(missing)}")
    return Stack(**{field: os.environ[variable] for field, variable in VARIABLES.items()})


def _options(profile: str) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--ignore-certificate-errors", "--window-size=1400,1000",
                     # Nothing in the background: this machine's network is closed beyond loopback.
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-gpu",
                     f"--user-data-dir={profile}"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture
def driver(stack):
    # The driver's path is always given: Selenium Manager never downloads anything. Each browser has
    # its own profile in a temp dir, removed with it; chromedriver listens on a free port of its own.
    with tempfile.TemporaryDirectory(prefix="berth-chromium-") as profile:
        service = Service(CHROMEDRIVER)
        browser = webdriver.Chrome(service=service, options=_options(profile))
        browser.set_script_timeout(30)
        try:
            yield browser
        finally:
            browser.quit()  # chromium, then chromedriver, which the service stops by its PID


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, keep what the browser showed and logged: `<test>.png`, `<test>.log`."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    browser = item.funcargs.get("driver")
    if browser is None:
        return
    out = artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", item.name)
    try:
        browser.save_screenshot(str(out / f"{stem}.png"))
        lines = [f"url: {browser.current_url}"]
        lines += [f"{e.get('level')} {e.get('message')}" for e in browser_log(browser)]
        (out / f"{stem}.log").write_text("\n".join(lines) + "\n")
        report.sections.append(("browser", f"screenshot and log in {out}/{stem}.*\n" + "\n".join(lines)))
    except Exception as error:  # the browser may be what failed; the report still stands
        report.sections.append(("browser", f"no screenshot: {error}"))
