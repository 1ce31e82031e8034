//! Unmodified `etcdctl` against `bosun store`: the same commands print the same output as
//! against real etcd (after masking IDs, sizes and timings, which differ between any two
//! clusters). Skipped with a printed reason when etcdctl is not installed.

use std::path::Path;

use bosun_tests::{Kind, Server, etcdctl, which};

/// etcd lists a lease's keys in Go map order, which varies run to run: compare them sorted.
fn sort_attached_keys(s: &str) -> String {
    let re = regex_lite::Regex::new(r"attached keys\(\[([^\]]*)\]\)").unwrap();
    re.replace_all(s, |c: &regex_lite::Captures<'_>| {
        let mut keys: Vec<&str> = c[1].split(' ').collect();
        keys.sort_unstable();
        format!("attached keys([{}])", keys.join(" "))
    })
    .into_owned()
}

/// Masks what legitimately differs between two clusters: IDs, versions, sizes, timings,
/// Raft positions.
fn normalize(s: &str) -> String {
    let rules: [(&str, &str); 12] = [
        (
            r#""(cluster_id|member_id|leader|ID|id|raft_term|raftTerm|raftIndex|raftAppliedIndex|dbSize|dbSizeInUse|hash)":\d+"#,
            r#""$1":N"#,
        ),
        (r#""version":"[^"]*""#, r#""version":"V""#),
        (r"\b[0-9a-f]{16}\b", "HEXID"),
        (r"\b[0-9a-f]{13,15}\b", "HEXID"),
        (r"took = [0-9.]+[µmn]?s", "took = T"),
        (r"\d+(\.\d+)? [kMG]?B\b", "SIZE"),
        (r"\b3\.\d+\.\d+\b", "V"),
        (r"remaining\(\d+s\)", "remaining(Ns)"),
        (r"\[127\.0\.0\.1:\d+\]", "[EP]"),
        (r"127\.0\.0\.1:\d+", "EP"),
        (
            r"(true|false), (true|false), \d+, \d+, \d+, ",
            "$1, $2, TERM, INDEX, APPLIED, ",
        ),
        (r"/tmp/[^ \n]+/snap\.db", "TMP/snap.db"),
    ];
    let mut out = s.to_string();
    for (re, rep) in rules {
        out = regex_lite::Regex::new(re)
            .unwrap()
            .replace_all(&out, rep)
            .into_owned();
    }
    out
}

/// The scripted session: every command etcd users reach for, in an order whose revisions are
/// deterministic. Returns a transcript.
fn session(server: &Server, dir: &Path) -> String {
    let ep = server.endpoint();
    let mut log = String::new();
    let mut run = |args: &[&str], stdin: Option<&str>| {
        let (code, out, err) = etcdctl(&ep, args, stdin);
        // etcdctl logs JSON lines to stderr for some commands; keep only its own messages.
        let err: String = err
            .lines()
            .filter(|l| !l.starts_with('{'))
            .map(|l| format!("{l}\n"))
            .collect();
        log.push_str(&format!(
            "$ etcdctl {}\n[exit {code}]\n{out}{}",
            args.join(" "),
            if err.is_empty() {
                String::new()
            } else {
                format!("[stderr]\n{err}")
            }
        ));
    };
    run(&["put", "foo", "bar"], None);
    run(&["put", "--prev-kv", "foo", "bar2"], None);
    run(&["put", "foo1", "v1"], None);
    run(&["put", "foo2", "v2"], None);
    run(&["put", "zoo", "z"], None);
    run(&["get", "foo"], None);
    run(&["get", "foo", "--prefix"], None);
    run(&["get", "foo", "--prefix", "--limit=2"], None);
    run(&["get", "foo", "--rev=2"], None);
    run(&["get", "foo", "--rev=1"], None);
    run(&["get", "foo", "--prefix", "--keys-only"], None);
    run(&["get", "foo", "--prefix", "--limit=1", "-w", "json"], None);
    run(&["get", "foo", "zoo"], None);
    run(
        &["get", "a", "--from-key", "--order=DESCEND", "--limit=2"],
        None,
    );
    run(&["get", "nokey"], None);
    run(&["get", "foo", "--rev=100"], None);
    run(&["del", "foo2"], None);
    run(&["del", "nokey"], None);
    run(&["del", "--prev-kv", "foo1"], None);
    run(
        &["txn", "-i"],
        Some("value(\"foo\") = \"bar2\"\n\nput foo yes\nget zoo\n\nput foo no\n\n"),
    );
    run(
        &["txn"],
        Some("mod(\"foo\") < \"3\"\n\nput foo never\n\nget foo\nput k9 v9\n\n"),
    );
    run(
        &["txn", "-w", "json"],
        Some("version(\"zoo\") = \"1\"\n\nget zoo\ndel zz\n\n\n"),
    );
    run(&["watch", "foo", "--prefix", "--rev=2"], None);
    run(&["watch", "foo", "--rev=2", "--prev-kv"], None);
    run(&["lease", "grant", "60"], None);
    run(&["lease", "grant", "1"], None);
    run(&["lease", "grant", "99999999999"], None);
    run(&["lease", "timetolive", "1234abcd"], None);
    run(&["lease", "keep-alive", "--once", "1234abcd"], None);
    run(&["lease", "revoke", "1234abcd"], None);
    run(&["compaction", "5"], None);
    run(&["compaction", "5"], None);
    run(&["compaction", "1000"], None);
    run(&["get", "foo", "--rev=4"], None);
    run(&["watch", "foo", "--rev=3"], None);
    run(&["defrag"], None);
    run(&["endpoint", "status"], None);
    run(&["endpoint", "status", "-w", "json"], None);
    run(&["endpoint", "health"], None);
    run(&["member", "list"], None);
    let snap = dir.join("snap.db");
    run(&["snapshot", "save", snap.to_str().unwrap()], None);
    log
}

/// A lease's lifecycle, with the ID the server chose.
fn lease_session(server: &Server) -> String {
    let ep = server.endpoint();
    let (_, out, _) = etcdctl(&ep, &["lease", "grant", "60"], None);
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let mut log = out;
    for args in [
        vec!["put", "--lease", &id, "lk1", "lv1"],
        vec!["put", "--lease", &id, "lk2", "lv2"],
        vec!["lease", "timetolive", &id],
        vec!["lease", "timetolive", &id, "--keys"],
        vec!["lease", "keep-alive", "--once", &id],
        vec!["lease", "list"],
        vec!["lease", "revoke", &id],
        vec!["get", "lk", "--prefix"],
        vec!["lease", "timetolive", &id],
    ] {
        let (code, out, err) = etcdctl(&ep, &args, None);
        log.push_str(&format!("$ {}\n[exit {code}]\n{out}{err}", args.join(" ")));
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_prints_what_it_prints_against_etcd() {
    if which("etcdctl").is_none() {
        println!("SKIP: etcdctl is not installed (apt-get install etcd-client)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bosun = Server::start(Kind::Bosun, dir.path(), &[]).await;
    let got = normalize(&session(&bosun, dir.path()));
    let got_lease = normalize(&lease_session(&bosun));
    println!("{got}{got_lease}");

    // Facts that hold whether or not etcd is here to compare with.
    for want in [
        "$ etcdctl put foo bar\n[exit 0]\nOK\n",
        "$ etcdctl put --prev-kv foo bar2\n[exit 0]\nOK\nfoo\nbar\n",
        "$ etcdctl get foo --prefix --limit=2\n[exit 0]\nfoo\nbar2\nfoo1\nv1\n",
        "$ etcdctl get foo --rev=2\n[exit 0]\nfoo\nbar\n",
        "$ etcdctl del --prev-kv foo1\n[exit 0]\n1\nfoo1\nv1\n",
        "Error: etcdserver: mvcc: required revision is a future revision",
        "SUCCESS\n\nOK\n\nzoo\nz\n",
        "compacted revision 5",
        "Error: etcdserver: mvcc: required revision has been compacted",
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)",
        "is healthy: successfully committed proposal",
        "Snapshot saved at",
        "keepalived with TTL(60)",
        "attached keys([lk1 lk2])",
    ] {
        assert!(
            got.contains(want) || got_lease.contains(want),
            "missing {want:?} in:\n{got}{got_lease}"
        );
    }

    if which("etcd").is_none() {
        println!("etcd not installed: compared against expected lines only");
        return;
    }
    let edir = tempfile::tempdir().unwrap();
    let etcd = Server::start(Kind::Etcd, edir.path(), &[]).await;
    let want = normalize(&session(&etcd, edir.path()));
    let want_lease = sort_attached_keys(&normalize(&lease_session(&etcd)));
    let diff: Vec<String> = want
        .lines()
        .zip(got.lines())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("line {i}: etcd {a:?} / bosun {b:?}"))
        .collect();
    assert!(
        diff.is_empty() && want.lines().count() == got.lines().count(),
        "etcdctl output differs:\n{}",
        diff.join("\n")
    );
    assert_eq!(
        want_lease,
        sort_attached_keys(&got_lease),
        "lease session differs"
    );
}
