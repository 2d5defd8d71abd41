"""Finding the console's controls as a user (or a screen reader) does: by role and accessible name
(Chromium's own computed name, through WebDriver), by label, by visible text. Waits are generous:
a slow machine must not fail a test; only the issue's own 5 s bound for the list is tight."""

import functools
import os
import time

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys  # noqa: F401  (re-exported for the tests)

WAIT = float(os.environ.get("BERTH_CONSOLE_WAIT", "60"))

# Elements of each role, before their accessible name is checked.
ROLES = {
    "button": "button:not([role]), [role=button], input[type=button], input[type=submit]",
    "link": "a[href]:not([role]), [role=link]",
    "tab": "[role=tab]",
    "field": "input:not([type=hidden]):not([type=button]):not([type=submit]), select, textarea",
    "checkbox": "input[type=checkbox], [role=checkbox]",
    "dialog": "dialog, [role=dialog]",
    "alert": "[role=alert]",
    "status": "[role=status]",
    "table": "table",
    "heading": "h1, h2, h3",
}


class Timeout(AssertionError):
    pass


def until(what, check, timeout=WAIT, interval=0.1):
    """Calls `check` until it answers something truthy (which is returned); fails saying `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except (StaleElementReferenceException, WebDriverException) as error:
            last = error
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def named(driver, role, name):
    """The displayed element of `role` named `name` now, or None."""
    for element in driver.find_elements(By.CSS_SELECTOR, ROLES[role]):
        try:
            if element.is_displayed() and element.accessible_name.strip() == name:
                return element
        except StaleElementReferenceException:
            continue
    return None


def find(driver, role, name, timeout=WAIT):
    """The displayed element of `role` whose accessible name is `name`."""
    return until(f"{role} named {name!r}", lambda: named(driver, role, name), timeout)


def button(driver, name, timeout=WAIT):
    return find(driver, "button", name, timeout)


def link(driver, name, timeout=WAIT):
    return find(driver, "link", name, timeout)


def tab(driver, name, timeout=WAIT):
    return find(driver, "tab", name, timeout)


def field(driver, label, timeout=WAIT):
    """The input, select or textarea labelled `label`."""
    return find(driver, "field", label, timeout)


def heading(driver, text, timeout=WAIT):
    """Waits for an <h1>-<h3> whose text is `text`."""
    def check():
        return next((h for h in driver.find_elements(By.CSS_SELECTOR, ROLES["heading"])
                     if h.is_displayed() and h.text.strip() == text), None)
    return until(f"heading {text!r}", check, timeout)


def region_text(driver, role, contains, timeout=WAIT):
    """Waits for a displayed role=alert / role=status whose text contains `contains`; its text."""
    def check():
        for element in driver.find_elements(By.CSS_SELECTOR, ROLES[role]):
            if element.is_displayed() and contains in element.text:
                return element.text
        return None
    return until(f"{role} saying {contains!r}", check, timeout)


def fill(element, text):
    element.clear()
    element.send_keys(text)


def choose(select, visible_text):
    from selenium.webdriver.support.select import Select
    Select(select).select_by_visible_text(visible_text)


TABLE_JS = """
const table = [...document.querySelectorAll('table')].find(t => t.getAttribute('aria-label') === arguments[0]);
if (!table) return null;
const head = table.tHead ? table.tHead.rows[0] : [...table.rows].find(r => r.querySelector('th'));
const names = head ? [...head.cells].map(c => c.textContent.trim()) : [];
const rows = [...(table.tBodies.length ? table.tBodies[0].rows : table.rows)].filter(r => r !== head);
return rows.map(r => Object.fromEntries([...r.cells].map((c, i) => [names[i] ?? String(i), c.textContent.trim()])));
"""


def table(driver, label):
    """The rows of `<table aria-label=label>` as {column header: cell text}, or None if absent."""
    return driver.execute_script(TABLE_JS, label)


def headers(driver, label):
    return driver.execute_script(
        "const t = [...document.querySelectorAll('table')].find(t => t.getAttribute('aria-label') === arguments[0]);"
        "return t ? [...t.querySelectorAll('th')].map(c => c.textContent.trim()) : null;", label)


def essentials(driver):
    """The Overview's `<dl class=essentials>` as {dt text: dd text}."""
    return driver.execute_script("""
        const dl = document.querySelector('dl.essentials');
        if (!dl) return null;
        const out = {};
        for (const dt of dl.querySelectorAll('dt')) {
            let dd = dt.nextElementSibling;
            while (dd && dd.tagName !== 'DD') dd = dd.nextElementSibling;
            out[dt.textContent.trim()] = dd ? dd.textContent.trim() : null;
        }
        return out;""")


def labelled_text(driver, css, label):
    """textContent of the element matching `css` with aria-label `label` (e.g. a <pre>), or None."""
    return driver.execute_script(
        "const e = [...document.querySelectorAll(arguments[0])].find(e => e.getAttribute('aria-label') === arguments[1]);"
        "return e ? e.textContent : null;", css, label)


def terminal_lines(driver):
    """What xterm.js shows, one string per row (its DOM renderer's `.xterm-rows`)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('.xterm-rows > div')].map(r => r.textContent);") or []
    return [row.replace("\xa0", " ").rstrip() for row in rows]


def browser_log(driver):
    """Everything the page logged so far (WebDriver hands each entry out once: kept here)."""
    kept = driver.__dict__.setdefault("berth_log", [])
    kept.extend(driver.get_log("browser"))
    return kept


def network_changes(driver):
    """How many requests Chromium cut because the host's network changed (see `load`)."""
    return sum("ERR_NETWORK_CHANGED" in e.get("message", "") for e in browser_log(driver))


def again_if_the_network_changed(test):
    """Runs a test whose session (a websocket, a stream) a network change would cut once more,
    from the start, when it failed and Chromium logged ERR_NETWORK_CHANGED meanwhile (see `load`);
    a failure with no such change fails at once."""
    @functools.wraps(test)
    def run(driver, *args, **kwargs):
        for attempt in range(3):
            cut = network_changes(driver)
            try:
                return test(driver, *args, **kwargs)
            except Exception:
                if attempt == 2 or network_changes(driver) == cut:
                    raise
    return run


def network_changed(driver):
    return network_changes(driver) > 0


def load(driver, url):
    """driver.get(url) until the console has drawn its page. Chromium aborts whatever is loading
    when the host's network changes (ERR_NETWORK_CHANGED: its own error page, or a module of the
    page that never arrives), and tests beside this one add and remove interfaces all the time: a
    load cut so is made again, as a user would reload."""
    for attempt in range(5):
        cut = network_changes(driver)
        if attempt:
            driver.get("about:blank")  # a load, not a same-document jump to the URL's hash
        driver.get(url)

        def settled():
            page = driver.execute_script(
                "const m = document.getElementById('main');"
                "return m && m.children.length ? 'drawn'"
                " : document.getElementById('main-frame-error') ? 'cut' : null;")
            return page or ("cut" if network_changes(driver) > cut else None)
        if until(f"the console's page at {url}", settled) == "drawn":
            return
    raise AssertionError(f"Chromium could not load {url}: the network kept changing")


def seen(driver, title):
    """The displayed heading whose text is `title` now, or None."""
    return next((h for h in driver.find_elements(By.CSS_SELECTOR, ROLES["heading"])
                 if h.is_displayed() and h.text.strip() == title), None)


def press(driver, name, what, done, timeout=WAIT):
    """Clicks button `name` and waits until `done()` answers; clicks again (as a user would) only
    when Chromium cut the request the click made because the host's network changed (see `load`).
    Only for actions that are the same done twice (PUT, DELETE, stop, start, a sign-in)."""
    state = {"cut": network_changes(driver)}
    button(driver, name).click()

    def check():
        value = done()
        if not value and network_changes(driver) > state["cut"]:
            state["cut"] = network_changes(driver)
            again = named(driver, "button", name)
            if again is not None and again.is_enabled():
                again.click()
        return value
    return until(what, check, timeout)


def sign_in(driver, stack, token, landing="Container groups"):
    """Signs in on `#/signin` with `token` and waits for the page it lands on."""
    load(driver, stack.endpoint + "/#/signin")
    fill(field(driver, "Access token"), token)
    if landing:
        press(driver, "Sign in", f"heading {landing!r}", lambda: seen(driver, landing))
    else:
        button(driver, "Sign in").click()


def open_hash(driver, stack, hash_):
    """Goes to a console URL in this tab (the session's token stays: same tab)."""
    load(driver, stack.endpoint + "/" + hash_)
