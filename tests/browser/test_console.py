"""The console as a user drives it in real headless Chromium: sign in, the list, a group's pages,
logs followed live, a shell in xterm.js, stop/start/delete, create from a pasted file, hostile text,
another tenant, an operator. Run by `tests/tests/e2e/console_browser.rs` against a real stack."""

import json
import re
import time

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

import ui
from conftest import artifacts_dir
from ui import Keys, button, field, fill, heading, link, tab, until

API = "api-version=2023-05-01"
LINE = re.compile(r"^line (\d+)$")


def sleeper(image, cpu=0.2):
    return {
        "location": "local",
        "properties": {
            "osType": "Linux",
            "restartPolicy": "Always",
            "containers": [{"name": "app", "properties": {
                "image": image,
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": cpu, "memoryInGB": 0.25}},
            }}],
        },
    }


def put_group(stack, name, body):
    status, answer = stack.api().call("PUT", f"{stack.group_path(name)}?{API}", body)
    assert status in (200, 201), answer
    return answer


def get_group(stack, name, token=None):
    return stack.api(token).call("GET", f"{stack.group_path(name)}?{API}")


def status_of(driver):
    return (ui.essentials(driver) or {}).get("Status")


def row_named(driver, label, name):
    return next((r for r in ui.table(driver, label) or [] if r.get("Name") == name), None)


def main_text(driver):
    return driver.find_element(By.ID, "main").text


def no_script_ran(driver):
    """The hostile markup made no element and ran nothing (no alert, no flag)."""
    assert driver.execute_script("return document.querySelectorAll('img, [onerror]').length") == 0
    assert driver.execute_script("return window.__xss === undefined")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def test_a_wrong_token_is_refused_and_says_so(driver, stack):
    ui.load(driver, stack.endpoint + "/#/signin")
    heading(driver, "Sign in")
    token = field(driver, "Access token")
    assert token.get_attribute("type") == "password"
    fill(token, "not-a-berth-token")
    button(driver, "Sign in").click()
    said = ui.region_text(driver, "alert", "That token was not accepted")
    assert said.startswith("That token was not accepted: "), said
    assert driver.execute_script("return sessionStorage.getItem('berth.token')") is None
    assert "#/signin" in driver.current_url


def test_signing_in_returns_to_the_deep_link_and_keeps_the_token_in_this_tab_only(driver, stack):
    # Signed out, a deep link asks to sign in first, then shows the page it named.
    ui.load(driver, stack.endpoint + "/" + stack.group_hash(stack.ticker))
    heading(driver, "Sign in")
    fill(field(driver, "Access token"), stack.token)
    button(driver, "Sign in").click()
    heading(driver, stack.ticker)
    assert driver.current_url.endswith(stack.group_hash(stack.ticker)), driver.current_url
    assert stack.token not in driver.current_url
    assert driver.execute_script("return sessionStorage.getItem('berth.token')") == stack.token
    assert driver.execute_script("return localStorage.length") == 0
    assert not driver.get_cookies()
    # A tenant sees no operator page.
    link(driver, "Container groups")
    assert ui.named(driver, "link", "Nodes") is None
    # Another tab of the same browser is not signed in.
    driver.switch_to.new_window("tab")
    ui.load(driver, stack.endpoint + "/#/groups")
    heading(driver, "Sign in")
    # Signing out forgets the token.
    driver.switch_to.window(driver.window_handles[0])
    button(driver, "Sign out").click()
    heading(driver, "Sign in")
    assert driver.execute_script("return sessionStorage.getItem('berth.token')") is None


def test_a_group_created_through_the_api_appears_in_the_list_within_5_s(driver, stack):
    ui.sign_in(driver, stack, stack.token)
    assert ui.headers(driver, "Container groups") == [
        "Name", "Resource group", "Status", "OS type", "IP address", "FQDN", "CPU", "Memory (GB)", "Restarts"]
    until("the ticker group's row", lambda: row_named(driver, "Container groups", stack.ticker))
    # The row says what the API says.
    _, group = get_group(stack, stack.ticker)
    fqdn = group["properties"]["ipAddress"]["fqdn"]
    row = until("the ticker row Running with its FQDN", lambda: (
        r := row_named(driver, "Container groups", stack.ticker)) and r["Status"] == "Running"
        and r["FQDN"] == fqdn and r)
    assert row["Resource group"] == stack.resource_group and row["OS type"] == "Linux", row
    driver.execute_script("window.__same_page = true")

    put_group(stack, "arrival", sleeper(stack.image))
    created = time.monotonic()
    until("the new group in the list", lambda: row_named(driver, "Container groups", "arrival"),
          timeout=5, interval=0.05)
    assert time.monotonic() - created <= 5
    assert driver.execute_script("return window.__same_page === true"), "the page was reloaded"

    # The filter narrows the rows; the name is a link to the group; back comes back.
    fill(field(driver, "Filter"), "arriv")
    until("only the new group listed", lambda: [r["Name"] for r in ui.table(driver, "Container groups")]
          == ["arrival"])
    fill(field(driver, "Filter"), "")
    groups = field(driver, "Resource group")
    options = [o.text for o in groups.find_elements(By.TAG_NAME, "option")]
    assert options == ["All resource groups", stack.resource_group], options
    ui.choose(groups, stack.resource_group)
    until("the resource group's rows", lambda: row_named(driver, "Container groups", stack.ticker))
    link(driver, stack.ticker).click()
    heading(driver, stack.ticker)
    driver.back()
    heading(driver, "Container groups")


def test_the_overview_shows_running_and_the_fqdn(driver, stack):
    status, group = get_group(stack, stack.ticker)
    assert status == 200, group
    fqdn = group["properties"]["ipAddress"]["fqdn"]
    assert fqdn.startswith("ticker-console."), group
    ui.sign_in(driver, stack, stack.token)
    ui.open_hash(driver, stack, stack.group_hash(stack.ticker))
    heading(driver, stack.ticker)
    assert tab(driver, "Overview").get_attribute("aria-selected") == "true"
    shown = until("Running and the FQDN", lambda: (e := ui.essentials(driver)) and e.get("Status") == "Running"
                  and e.get("FQDN") == fqdn and e)
    for term in ["Provisioning state", "IP address", "OS type", "Restart policy", "CPU", "Memory (GB)",
                 "Location", "Resource group"]:
        assert term in shown, shown
    assert shown["OS type"] == "Linux" and shown["Restart policy"] == "Always", shown
    json_view = json.loads(until("the JSON view", lambda: ui.labelled_text(driver, "pre", "JSON view")))
    assert json_view["name"] == stack.ticker
    assert json_view["properties"]["ipAddress"]["fqdn"] == fqdn
    out = artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out / "group-overview.png"))


def chart_names(driver):
    """The accessible names of the Metrics tab's charts: `<caption>: <series> <latest> <unit>, …`."""
    return [e.accessible_name for e in driver.find_elements(By.CSS_SELECTOR, "figure.metric svg[role=img]")]


def test_metrics_chart_the_containers_cpu_and_memory(driver, stack):
    ui.sign_in(driver, stack, stack.token)
    ui.open_hash(driver, stack, stack.group_hash(stack.ticker, "metrics"))
    heading(driver, stack.ticker)
    assert tab(driver, "Metrics").get_attribute("aria-selected") == "true"
    ranges = Select(field(driver, "Time range"))
    assert [o.text for o in ranges.options] == ["Last 15 minutes", "Last hour", "Last 6 hours", "Last 24 hours"]

    def charted():
        names = chart_names(driver)
        cpu = next((n for n in names if n.startswith("CPU usage: app ")), None)
        memory = next((n for n in names if n.startswith("Memory usage: app ")), None)
        if cpu and memory and driver.find_elements(By.CSS_SELECTOR, "figure.metric polyline, figure.metric circle"):
            return names
        # The node samples every 10 s: ask again rather than wait for the tab's 30 s refresh.
        ranges.select_by_index(1 - ranges.options.index(ranges.first_selected_option))
        return None
    names = until("the app container's CPU and memory charted", charted, interval=2)
    assert any(n.startswith("Network bytes received per second: ") for n in names), names
    assert any(n.startswith("Network bytes transmitted per second: ") for n in names), names
    memory = next(n for n in names if n.startswith("Memory usage: app "))
    assert not memory.startswith("Memory usage: app 0 "), memory  # a running shell uses some memory
    out = artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out / "group-metrics.png"))


def test_logs_show_lines_printed_before_and_after_the_page_opened(driver, stack):
    ui.sign_in(driver, stack, stack.token)
    ui.open_hash(driver, stack, stack.group_hash(stack.ticker, "containers", "app", "logs"))
    heading(driver, stack.ticker)
    assert tab(driver, "Logs").get_attribute("aria-selected") == "true"
    assert driver.execute_script(
        "return document.querySelector('pre[aria-label=\"Logs\"]').getAttribute('role')") == "log"

    def numbers():
        text = ui.labelled_text(driver, "pre", "Logs") or ""
        return [int(m.group(1)) for m in map(LINE.match, text.splitlines()) if m]

    # `line 1` was printed seconds before this page existed.
    seen = until("the first line", lambda: 1 in numbers() and numbers())
    # A line printed after the page showed what it had: the stream follows.
    after = max(seen) + 2

    def followed():
        if after in numbers():
            return True
        # A stream Chromium cut when the host's network changed (tests beside add interfaces): the
        # user's remedy, and only then.
        if ui.network_changed(driver) and ui.named(driver, "button", "Reconnect"):
            ui.named(driver, "button", "Reconnect").click()
        return False
    until(f"line {after} (printed after the page opened)", followed)

    # Timestamps: the stream is opened again with them.
    ui.find(driver, "checkbox", "Show timestamps").click()
    stamped = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z line \d+$")
    until("timestamped lines", lambda: (lines := (ui.labelled_text(driver, "pre", "Logs") or "").splitlines())
          and all(stamped.match(line) for line in lines))
    button(driver, "Download")


SIZE = re.compile(r"^\d+ \d+$")

# Keeps the exec POST's password where the test can look for it on the page afterwards.
WATCH_EXEC = """
window.__exec_passwords = [];
const fetched = window.fetch;
window.fetch = async (...args) => {
  const answer = await fetched(...args);
  if (String(args[0]).includes('/exec')) {
    answer.clone().json().then((b) => window.__exec_passwords.push(b.password)).catch(() => {});
  }
  return answer;
};
"""


@ui.again_if_the_network_changed
def test_connect_runs_a_shell_and_shows_the_exit_code(driver, stack):
    driver.set_window_size(1400, 1000)  # the size the driver starts with; a second attempt shrinks it again
    ui.sign_in(driver, stack, stack.token)
    ui.open_hash(driver, stack, stack.group_hash(stack.ticker, "containers", "app", "connect"))
    heading(driver, stack.ticker)
    shell = field(driver, "Shell")
    options = [o.text for o in shell.find_elements(By.TAG_NAME, "option")]
    assert options == ["/bin/sh", "/bin/bash", "Custom"], options
    assert not field(driver, "Custom command").is_enabled()
    driver.execute_script(WATCH_EXEC)
    button(driver, "Connect").click()
    terminal = until("the terminal", lambda: driver.find_element(
        By.CSS_SELECTOR, '.terminal[aria-label="Terminal"] .xterm-helper-textarea'))
    until("busybox's prompt", lambda: any("#" in row for row in ui.terminal_lines(driver)))
    terminal.send_keys("echo $((6*7))" + Keys.ENTER)
    until("42 on the terminal", lambda: "42" in ui.terminal_lines(driver))

    # The terminal follows the window's size.
    def size():
        sizes = [row for row in ui.terminal_lines(driver) if SIZE.match(row)]
        return sizes[-1] if sizes else None
    terminal.send_keys("stty size" + Keys.ENTER)
    before = until("stty's answer", size)
    driver.set_window_size(1000, 700)
    def resized():
        terminal.send_keys("stty size" + Keys.ENTER)
        time.sleep(0.5)
        return size() != before
    until("a smaller terminal", resized, interval=1)

    # The session's password went to the socket, never to the page or its log.
    passwords = driver.execute_script("return window.__exec_passwords")
    assert len(passwords) == 1 and passwords[0], passwords
    assert passwords[0] not in driver.page_source
    assert not [e for e in ui.browser_log(driver) if passwords[0] in e.get("message", "")]
    button(driver, "Disconnect")
    terminal.send_keys("exit 3" + Keys.ENTER)
    said = ui.region_text(driver, "status", "Exited with code")
    assert said.strip() == "Exited with code 3", said
    button(driver, "Connect")


def test_stop_changes_the_status_and_start_runs_it_again(driver, stack):
    ui.sign_in(driver, stack, stack.token)
    ui.open_hash(driver, stack, stack.group_hash(stack.stoppable))
    heading(driver, stack.stoppable)
    until("Running", lambda: status_of(driver) == "Running")
    ui.press(driver, "Stop", "Stopped on the page", lambda: status_of(driver) == "Stopped")
    _, group = get_group(stack, stack.stoppable)
    assert group["properties"]["instanceView"]["state"] == "Stopped", group
    ui.press(driver, "Start", "Running again", lambda: status_of(driver) == "Running")


def test_delete_asks_naming_the_group_then_deletes_it(driver, stack):
    put_group(stack, "doomed", sleeper(stack.image, cpu=0.1))
    ui.sign_in(driver, stack, stack.token)
    ui.open_hash(driver, stack, stack.group_hash("doomed"))
    heading(driver, "doomed")
    button(driver, "Delete").click()
    dialog = until("the confirmation", lambda: next(
        (d for d in driver.find_elements(By.CSS_SELECTOR, ui.ROLES["dialog"]) if d.is_displayed()), None))
    assert "Delete container group doomed?" in dialog.text, dialog.text
    button(driver, "Cancel").click()
    until("the dialog closed", lambda: not any(
        d.is_displayed() for d in driver.find_elements(By.CSS_SELECTOR, ui.ROLES["dialog"])))
    assert get_group(stack, "doomed")[0] == 200
    button(driver, "Delete").click()
    ui.press(driver, "Delete doomed", "the list again", lambda: ui.seen(driver, "Container groups"))
    until("the group gone from the API", lambda: get_group(stack, "doomed")[0] == 404)


PASTED = """apiVersion: '2023-05-01'
location: local
name: pasted
properties:
  containers:
  - name: app
    properties:
      image: {image}
      command: [sleep, '3600']
      resources:
        requests:
          cpu: 0.2
          memoryInGB: 0.25
  osType: Linux
  restartPolicy: Always
tags:
  made-by: console
type: Microsoft.ContainerInstance/containerGroups
"""


def test_create_from_pasted_yaml_makes_the_group(driver, stack):
    ui.sign_in(driver, stack, stack.token)
    link(driver, "Create").click()
    heading(driver, "Create a container group")
    tab(driver, "File").click()
    text = field(driver, "YAML or JSON")
    fill(field(driver, "Resource group"), stack.resource_group)
    # A file that does not parse: the parser's word, next to the text.
    text.send_keys("properties: [unclosed\n")
    button(driver, "Create").click()
    said = ui.region_text(driver, "alert", "text: ")
    assert said.startswith("text: "), said
    # The file as pasted.
    text.clear()
    text.send_keys(PASTED.format(image=stack.image))
    ui.press(driver, "Create", "the new group's page", lambda: ui.seen(driver, "pasted"))
    status, group = get_group(stack, "pasted")
    assert status == 200, group
    assert group["tags"] == {"made-by": "console"}, group
    assert group["properties"]["containers"][0]["properties"]["image"] == stack.image
    until("the created group Running", lambda: status_of(driver) == "Running")


def test_hostile_text_in_tags_and_logs_renders_as_text_and_runs_nothing(driver, stack):
    ui.sign_in(driver, stack, stack.token)
    ui.open_hash(driver, stack, stack.group_hash(stack.tagged))
    heading(driver, stack.tagged)
    json_view = until("the JSON view", lambda: ui.labelled_text(driver, "pre", "JSON view"))
    assert json.loads(json_view)["tags"]["note"] == stack.hostile
    assert stack.hostile in driver.find_element(By.CSS_SELECTOR, 'pre[aria-label="JSON view"]').text
    no_script_ran(driver)

    ui.open_hash(driver, stack, stack.group_hash(stack.tagged, "containers", "app", "properties"))
    until("the command in Properties", lambda: stack.hostile in (ui.labelled_text(driver, "pre", "Properties") or ""))
    no_script_ran(driver)

    ui.open_hash(driver, stack, stack.group_hash(stack.tagged, "containers", "app", "logs"))
    until("the hostile log line", lambda: stack.hostile in (ui.labelled_text(driver, "pre", "Logs") or "").splitlines())
    assert stack.hostile in driver.find_element(By.CSS_SELECTOR, 'pre[aria-label="Logs"]').text
    no_script_ran(driver)


def test_another_tenant_sees_none_of_it(driver, stack):
    ui.sign_in(driver, stack, stack.other_token)
    until("the empty list", lambda: "No container groups" in main_text(driver))
    time.sleep(2.5)  # a poll later, still nothing of tenant A's
    text = main_text(driver)
    for name in [stack.ticker, stack.tagged, stack.stoppable, stack.resource_group]:
        assert name not in text, text
    ui.open_hash(driver, stack, stack.group_hash(stack.ticker))
    said = ui.region_text(driver, "alert", "was not found")
    assert said.strip() == f"Container group {stack.ticker} was not found.", said
    ui.open_hash(driver, stack, stack.group_hash(stack.tagged, "containers", "app", "logs"))
    ui.region_text(driver, "alert", f"Container group {stack.tagged} was not found.")
    assert stack.hostile not in main_text(driver)


def test_billing_shows_the_month_and_the_nodes_page_refuses_a_tenant(driver, stack):
    ui.sign_in(driver, stack, stack.token)
    link(driver, "Billing").click()
    heading(driver, "Billing")
    heading(driver, "Month to date")
    until("the month's table", lambda: ui.table(driver, "Month to date") is not None)
    assert ui.named(driver, "button", "Download CSV") is None  # the export is the operators'
    ui.open_hash(driver, stack, "#/nodes")
    heading(driver, "Nodes")
    said = ui.region_text(driver, "alert", "")  # the API's 403, in its words
    assert stack.node not in main_text(driver), said


def test_an_operator_sees_the_nodes(driver, stack):
    ui.sign_in(driver, stack, stack.operator_token)
    link(driver, "Nodes").click()
    heading(driver, "Nodes")
    assert ui.headers(driver, "Nodes") == ["Name", "OS type", "Status", "CPU", "Memory (GB)", "Groups"]
    row = until("the real node's row", lambda: row_named(driver, "Nodes", stack.node))
    assert row["Status"] == "Ready", row
    link(driver, "Billing").click()
    heading(driver, "Export")
    for label in ["From", "To", "Granularity"]:
        field(driver, label)
    button(driver, "Download CSV")


CONTROLS_JS = """
const out = [];
for (const e of document.querySelectorAll('button, a[href], [role=tab], [role=button], input, select, textarea')) {
  if (e.closest('.xterm') || e.type === 'hidden' || !e.getClientRects().length) continue;
  const text = (e.matches('input, select, textarea') ? '' : e.textContent).replace(/\\s+/g, ' ').trim();
  out.push([e, e.tagName.toLowerCase(), text]);
}
return out;
"""


@pytest.mark.parametrize("where", ["list", "overview", "containers", "metrics", "logs", "connect", "create"])
def test_every_control_is_named_as_it_reads(driver, stack, where):
    ui.sign_in(driver, stack, stack.token)
    hashes = {
        "list": "#/groups",
        "overview": stack.group_hash(stack.ticker),
        "containers": stack.group_hash(stack.ticker, "containers"),
        "metrics": stack.group_hash(stack.ticker, "metrics"),
        "logs": stack.group_hash(stack.ticker, "containers", "app", "logs"),
        "connect": stack.group_hash(stack.ticker, "containers", "app", "connect"),
        "create": "#/create",
    }
    ui.open_hash(driver, stack, hashes[where])
    if where == "list":
        until("the list's rows", lambda: row_named(driver, "Container groups", stack.ticker))
    elif where == "create":
        heading(driver, "Create a container group")
    else:
        heading(driver, stack.ticker)
        until("the page drawn", lambda: ui.essentials(driver) or ui.table(driver, "Containers")
              or chart_names(driver))
        time.sleep(1)
    wrong = []
    for element, tag, text in driver.execute_script(CONTROLS_JS):
        name = element.accessible_name.strip()
        if not name or (text and name != text):
            wrong.append(f"<{tag}> text {text!r} named {name!r}")
    assert not wrong, wrong
