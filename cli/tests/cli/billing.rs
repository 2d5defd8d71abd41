//! `berth billing export` and `berth billing show` against the scripted server: the requests they
//! send, the files they leave (or do not), what they print and their exit codes.

use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

use super::{BREAK_STREAM, Reply, Server, not_found, reply, run, signal, streamed_as};

const CSV_TYPE: &str = "text/csv; charset=utf-8";
const JSONL_TYPE: &str = "application/x-ndjson";
const EXPORT_PATH: &str = "/admin/billing/usage";
const TENANT_PATH: &str = "/subscriptions/dev/providers/Microsoft.ContainerInstance/usage";

/// Three rows; the second has a line break in a quoted field and the body is cut mid-row.
const CSV_PIECES: [&str; 4] = [
    "BillingPeriodStart,ChargeDescription,ConsumedQuantity,x_Accrued\r\n2026-11-01T00:00:00.000Z,Linux vCPU,36",
    "00,false\r\n2026-11-01T00:00:00.000Z,\"two\nlines\",12.5,true\r\n",
    "2026-11-01T00:00:00.000Z,\"quoted, comma\",0.0000113,false\r",
    "\n",
];

/// A chunked answer of `pieces`, complete.
fn body(content_type: &str, pieces: &[&str]) -> Reply {
    let (sender, chunks) = mpsc::unbounded_channel();
    for piece in pieces {
        assert!(!piece.is_empty(), "an empty chunk would end the body");
        sender.send((*piece).to_owned()).unwrap();
    }
    streamed_as(content_type, chunks)
}

fn refused(status: u16, code: &str, message: &str) -> Reply {
    reply(status, json!({"error": {"code": code, "message": message}}))
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_the_rows_to_stdout() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", EXPORT_PATH) => body(CSV_TYPE, &CSV_PIECES).header("x-berth-row-estimate", "2"),
        _ => not_found(),
    })
    .await;
    let out = run(
        &mut server.berth(),
        &[
            "billing",
            "export",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-02T00:00:00+01:00",
            "--granularity",
            "hourly",
            "--format",
            "csv",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, CSV_PIECES.concat(), "the body as it came");
    assert_eq!(out.stderr, "", "no summary when the rows go to stdout");
    let sent = server.requests().pop().unwrap();
    assert_eq!(
        sent.query,
        "from=2026-11-01T00%3A00%3A00Z&to=2026-11-01T23%3A00%3A00Z&granularity=hourly&format=csv&api-version=2023-05-01"
    );
    assert_eq!(sent.header("accept"), Some("text/csv"));
    assert_eq!(sent.header("authorization"), Some("Bearer t"));

    // Nothing given: the server's defaults.
    let out = run(&mut server.berth(), &["billing", "export"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.query, "api-version=2023-05-01");
    assert_eq!(
        sent.header("accept"),
        Some("text/csv, application/x-ndjson")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_a_file_replaces_it_only_when_complete() {
    let jsonl = [
        "{\"ResourceName\":\"web\",\"ConsumedQuantity\":1}\n{\"Resource",
        "Name\":\"api\",\"ConsumedQuantity\":2}\n",
    ];
    let server = Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", EXPORT_PATH) if r.query.contains("format=jsonl") => body(JSONL_TYPE, &jsonl),
        ("GET", EXPORT_PATH) => body(CSV_TYPE, &CSV_PIECES).header("x-berth-row-estimate", "2"),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usage.csv");
    std::fs::write(&file, "last month's export\n").unwrap();
    let path = file.display().to_string();

    let out = run(&mut server.berth(), &["billing", "export", "-f", &path]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    // stderr is no terminal here: no progress, only the summary (rows beyond the estimate count).
    assert_eq!(out.stderr, format!("wrote 3 rows to {path}\n"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CSV_PIECES.concat());
    assert_eq!(entries(dir.path()), ["usage.csv"], "no partial file left");

    let jsonl_path = dir.path().join("usage.jsonl").display().to_string();
    let out = run(
        &mut server.berth(),
        &[
            "billing",
            "export",
            "--format",
            "jsonl",
            "--file",
            &jsonl_path,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, format!("wrote 2 rows to {jsonl_path}\n"));
    assert_eq!(
        std::fs::read_to_string(&jsonl_path).unwrap(),
        jsonl.concat()
    );
    assert_eq!(
        server.requests().pop().unwrap().header("accept"),
        Some("application/x-ndjson")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_export_leaves_no_file_behind() {
    let server = Server::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", EXPORT_PATH) => body(CSV_TYPE, &[CSV_PIECES[0], CSV_PIECES[1], BREAK_STREAM]),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usage.csv");
    std::fs::write(&file, "last month's export\n").unwrap();
    let path = file.display().to_string();
    let out = run(&mut server.berth(), &["billing", "export", "-f", &path]).await;
    assert_eq!(
        out.code, 5,
        "a broken answer is a server error: {}",
        out.stderr
    );
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "last month's export\n",
        "the earlier file stays as it was"
    );
    assert_eq!(
        entries(dir.path()),
        ["usage.csv"],
        "the partial file is gone"
    );

    let fresh = dir.path().join("fresh.csv").display().to_string();
    let out = run(&mut server.berth(), &["billing", "export", "-f", &fresh]).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(entries(dir.path()), ["usage.csv"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_errors_map_to_exit_codes_and_leave_no_file() {
    let server = Server::start(|r| {
        if r.header("authorization") == Some("Bearer tenant") {
            return refused(
                403,
                "AuthorizationFailed",
                "billing export needs an operator token",
            );
        }
        if r.header("authorization") != Some("Bearer t") {
            return refused(401, "AuthenticationFailed", "bad token");
        }
        if r.query.contains("granularity=raw") {
            return refused(400, "InvalidParameter", "raw rows span at most 31 days");
        }
        body(CSV_TYPE, &CSV_PIECES)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.csv").display().to_string();
    let export = |extra: &[&str]| {
        let mut args = vec!["billing", "export", "-f", path.as_str()];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    for (extra, code, stderr) in [
        (
            vec!["--token", "bad"],
            4,
            "error: AuthenticationFailed: bad token\n",
        ),
        (
            vec!["--token", "tenant"],
            4,
            "error: AuthorizationFailed: billing export needs an operator token\n",
        ),
        (
            vec!["--granularity", "raw"],
            1,
            "error: InvalidParameter: raw rows span at most 31 days\n",
        ),
    ] {
        let args = export(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&mut server.berth(), &args).await;
        assert_eq!(out.code, code, "{extra:?}: {}", out.stderr);
        assert_eq!(out.stderr, stderr, "{extra:?}");
        assert!(entries(dir.path()).is_empty(), "{extra:?}");
    }
    let asked = server.requests().len();

    // Mistakes on the command line: exit 2, nothing asked, nothing written.
    let out = run(
        &mut server.berth(),
        &[
            "billing",
            "export",
            "--from",
            "2026-11-01T10:00",
            "-f",
            &path,
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("expected an RFC 3339 time"),
        "{}",
        out.stderr
    );
    let out = run(
        &mut server.berth(),
        &[
            "billing",
            "export",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-01",
            "-f",
            &path,
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "error: --from (2026-11-02T00:00:00Z) must be before --to (2026-11-01T00:00:00Z)\n"
    );
    assert_eq!(server.requests().len(), asked);
    assert!(entries(dir.path()).is_empty());

    // A file that cannot be created: nothing asked either.
    let nowhere = dir.path().join("missing/usage.csv").display().to_string();
    let out = run(&mut server.berth(), &["billing", "export", "-f", &nowhere]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot create") && out.stderr.contains("usage.csv.partial"),
        "{}",
        out.stderr
    );
    assert_eq!(server.requests().len(), asked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_an_export_and_removes_the_partial_file() {
    let (sender, chunks) = mpsc::unbounded_channel::<String>();
    let chunks = Mutex::new(Some(chunks));
    let server = Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", EXPORT_PATH) => streamed_as(CSV_TYPE, chunks.lock().unwrap().take().unwrap()),
        _ => not_found(),
    })
    .await;
    sender.send(CSV_PIECES[0].to_owned()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.csv").display().to_string();
    let child = server
        .berth()
        .args(["billing", "export", "-f", &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The request is out: the export is under way, writing usage.csv.partial.
    tokio::time::timeout(Duration::from_secs(20), async {
        while server.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the export asks the server");
    assert_eq!(entries(dir.path()), ["usage.csv.partial"]);
    signal(&child, rustix::process::Signal::INT);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("Ctrl-C ends the export")
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    drop(sender);
}

/// The month-to-date rows of the tenant route's fixture.
const USAGE: [&str; 4] = [
    r#"{"ChargePeriodStart":"2026-11-01T00:00:00.000Z","ConsumedQuantity":5400.5,"ConsumedUnit":"vCPU-Seconds","ListUnitPrice":0.0000113,"BilledCost":0.06102565,"BillingCurrency":"USD","ResourceName":"web","SkuId":"linux/vcpu_seconds","Tags":{"env":"prod"},"x_ResourceGroup":"demo","x_Accrued":false}"#,
    r#"{"ChargePeriodStart":"2026-11-22T19:00:00.000Z","ConsumedQuantity":1799.5,"ConsumedUnit":"vCPU-Seconds","ListUnitPrice":0.0000113,"BilledCost":0.02033435,"BillingCurrency":"USD","ResourceName":"web","SkuId":"linux/vcpu_seconds","Tags":{},"x_ResourceGroup":"demo","x_Accrued":true}"#,
    r#"{"ConsumedQuantity":0.2,"ConsumedUnit":"GPU-Seconds","BilledCost":0.2,"BillingCurrency":"USD","ResourceName":"train","SkuId":"gpu/v100/gpu_seconds","Tags":{},"x_ResourceGroup":"ml","x_Accrued":false}"#,
    r#"{"ConsumedQuantity":0.1,"ConsumedUnit":"GPU-Seconds","BilledCost":0.1,"BillingCurrency":"USD","ResourceName":"train","SkuId":"gpu/v100/gpu_seconds","Tags":{},"x_ResourceGroup":"ml","x_Accrued":false}"#,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_sums_the_month_per_group_and_meter() {
    let text = USAGE.join("\n") + "\n";
    let server = Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", TENANT_PATH) if r.query.contains("from=2020-01-01") => body(JSONL_TYPE, &["\n"]),
        ("GET", TENANT_PATH) => {
            // Cut anywhere, mid-row included.
            let (a, b) = text.split_at(200);
            body(JSONL_TYPE, &[a, b])
        }
        _ => not_found(),
    })
    .await;
    let before = OffsetDateTime::now_utc();
    let out = run(&mut server.berth(), &["billing", "show"]).await;
    let after = OffsetDateTime::now_utc();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "\
GROUP     METER                 QUANTITY           COST         ACCRUING
--------- --------------------- ------------------ ------------ ---------
demo/web  linux/vcpu_seconds    7200 vCPU-Seconds  0.08136 USD  yes
ml/train  gpu/v100/gpu_seconds  0.3 GPU-Seconds    0.30 USD     no
TOTAL                                              0.38136 USD
"
    );
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.path, TENANT_PATH);
    assert_eq!(sent.header("accept"), Some("application/x-ndjson"));
    // From the start of this month, UTC (either side of a month's end the test may straddle).
    let month_start = |t: OffsetDateTime| {
        t.replace_day(1)
            .unwrap()
            .replace_time(time::Time::MIDNIGHT)
            .format(&Rfc3339)
            .unwrap()
            .replace(':', "%3A")
    };
    let expected = |t| {
        format!(
            "from={}&granularity=monthly&format=jsonl&api-version=2023-05-01",
            month_start(t)
        )
    };
    assert!(
        sent.query == expected(before) || sent.query == expected(after),
        "{}",
        sent.query
    );

    let out = run(
        &mut server.berth(),
        &[
            "billing",
            "show",
            "--from",
            "2020-11-15T12:00:00+01:00",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[2]["SkuId"], "gpu/v100/gpu_seconds");
    assert!(
        out.stdout.contains("\"ListUnitPrice\":0.0000113"),
        "exact decimals: {}",
        out.stdout
    );
    assert!(
        server
            .requests()
            .pop()
            .unwrap()
            .query
            .starts_with("from=2020-11-15T11%3A00%3A00Z&granularity=monthly&format=jsonl"),
    );

    let out = run(
        &mut server.berth(),
        &["billing", "show", "--from", "2020-01-01"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "no usage since 2020-01-01T00:00:00Z\n");
    let out = run(
        &mut server.berth(),
        &["billing", "show", "--from", "2020-01-01", "-o", "json"],
    )
    .await;
    assert_eq!(out.stdout, "[]\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_errors() {
    let server = Server::start(|r| match r.path.as_str() {
        TENANT_PATH => body(JSONL_TYPE, &[USAGE[0], "\n{\"BilledCost\":\"lots\"}\n"]),
        "/subscriptions/other/providers/Microsoft.ContainerInstance/usage" => refused(
            403,
            "AuthorizationFailed",
            "the token may not use subscription other",
        ),
        _ => not_found(),
    })
    .await;
    let out = run(&mut server.berth(), &["billing", "show"]).await;
    assert_eq!(
        out.code, 5,
        "an answer that is not usage rows: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("row 2 of the usage answer is not a usage row"),
        "{}",
        out.stderr
    );
    let out = run(
        &mut server.berth(),
        &["billing", "show", "--subscription", "other"],
    )
    .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "error: AuthorizationFailed: the token may not use subscription other\n"
    );
    let asked = server.requests().len();
    let out = run(&mut server.berth(), &["billing", "show", "--from", "soon"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = run(
        &mut server.berth(),
        &["billing", "show", "--from", "2999-01-01"],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: --from (2999-01-01T00:00:00Z) must be before now ("),
        "{}",
        out.stderr
    );
    assert_eq!(server.requests().len(), asked, "nothing asked");
}
