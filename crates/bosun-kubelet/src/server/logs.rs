//! Container logs as the kubelet serves them (`pkg/kubelet/kuberuntime/logs` and
//! `validateContainerLogStatus`), without I/O: the query as `PodLogOptions`, which attempt's
//! file to read, the CRI log format, and what of each line the client gets (`sinceTime`,
//! `timestamps`, `limitBytes`, `tailLines`, partial lines joined). The server's loop reads
//! files and feeds them through [`LogReader`].

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// The log options of one request (kubelet's `LogOptions` from the v1 `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Lines from the end to start at (`tailLines`); `None`: the whole file.
    pub tail: Option<u64>,
    /// Bytes to send at most (`limitBytes`); `None`: no limit.
    pub bytes: Option<u64>,
    /// Lines older than this are skipped (`sinceSeconds`, `sinceTime`, the later of both).
    pub since: Option<Timestamp>,
    /// Keep streaming what the container writes.
    pub follow: bool,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// The attempt before the newest.
    pub previous: bool,
}

/// A request the kubelet refuses, with the kubelet's code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub code: u16,
    /// The body (plain text, as the kubelet's `WriteError`).
    pub message: String,
}

impl Refusal {
    fn new(code: u16, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// Go's `strconv.ParseBool`, which decodes query booleans.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Decodes and validates the query as the kubelet does (`getContainerLogs`): a value that
/// does not decode is 400 `Unable to decode query.`, options that fail
/// `ValidatePodLogOptions` are 422 `Invalid request.`. The legacy `tail` parameter is
/// `tailLines` (`all`: every line).
pub fn log_options(q: &HashMap<String, String>, now: Timestamp) -> Result<LogOptions, Refusal> {
    let undecodable = || Refusal::new(400, r#"{"message": "Unable to decode query."}"#);
    let invalid = || Refusal::new(422, r#"{"message": "Invalid request."}"#);
    let boolean = |k: &str| match q.get(k) {
        None => Ok(false),
        Some(v) if v.is_empty() => Ok(false),
        Some(v) => parse_bool(v).ok_or_else(undecodable),
    };
    let int = |k: &str| match q.get(k) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| undecodable()),
    };
    let mut tail = int("tailLines")?;
    match q.get("tail").map(String::as_str) {
        None | Some("") => {}
        Some("all") => tail = None,
        Some(t) => tail = Some(t.parse::<i64>().map_err(|_| undecodable())?),
    }
    let limit = int("limitBytes")?;
    let since_seconds = int("sinceSeconds")?;
    let since_time = match q.get("sinceTime").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<Timestamp>().map_err(|_| undecodable())?),
    };
    // ValidatePodLogOptions.
    if tail.is_some_and(|t| t < 0)
        || limit.is_some_and(|b| b < 1)
        || since_seconds.is_some_and(|s| s < 1)
        || (since_seconds.is_some() && since_time.is_some())
    {
        return Err(invalid());
    }
    let mut since = since_seconds.and_then(|s| {
        now.checked_sub(jiff::SignedDuration::from_secs(s))
            .ok()
            .or(Some(Timestamp::MIN))
    });
    if let Some(t) = since_time
        && since.is_none_or(|s| t > s)
    {
        since = Some(t);
    }
    Ok(LogOptions {
        tail: tail.map(|t| t.unsigned_abs()),
        bytes: limit.map(|b| b.unsigned_abs()),
        since,
        follow: boolean("follow")?,
        timestamps: boolean("timestamps")?,
        previous: boolean("previous")?,
    })
}

/// What a log request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The file of this attempt (`<restartCount>.log`).
    Attempt(u32),
    /// Nothing yet: the container runs but has no log file (a hollow pod's).
    Empty,
}

/// The container's status in the pod's status (containers, init, ephemeral).
pub fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let st = pod.status.as_ref()?;
    [
        &st.container_statuses,
        &st.init_container_statuses,
        &st.ephemeral_container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .find(|c| c.name == container)
}

/// Whether the pod's spec has the container (containers, init, ephemeral).
pub fn has_container(pod: &Pod, container: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.containers.iter().any(|c| c.name == container)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == container)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == container)
}

/// Which log to read, from the container's status and the attempts that have a log file
/// (sorted): the newest attempt, or with `previous` the one before it. The refusals are the
/// kubelet's (`validateContainerLogStatus`), answered 400.
pub fn choose_log(
    pod: &str,
    container: &str,
    status: Option<&ContainerStatus>,
    attempts: &[u32],
    previous: bool,
) -> Result<LogSource, Refusal> {
    let refuse = |m: String| Err(Refusal::new(400, m));
    if previous {
        return match attempts {
            [.., before, _newest] => Ok(LogSource::Attempt(*before)),
            _ => refuse(format!(
                "previous terminated container {container:?} in pod {pod:?} not found"
            )),
        };
    }
    let Some(cs) = status else {
        return refuse(format!(
            "container {container:?} in pod {pod:?} is not available"
        ));
    };
    let state = cs.state.as_ref();
    let ran = state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        || cs
            .last_state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some());
    if !ran {
        return match state.and_then(|s| s.waiting.as_ref()) {
            Some(w) => {
                let why = match w.reason.as_deref().unwrap_or_default() {
                    "ErrImagePull" => "image can't be pulled".to_string(),
                    "ImagePullBackOff" => "trying and failing to pull image".to_string(),
                    other => other.to_string(),
                };
                refuse(format!(
                    "container {container:?} in pod {pod:?} is waiting to start: {why}"
                ))
            }
            None => refuse(format!(
                "container {container:?} in pod {pod:?} is waiting to start - no logs yet"
            )),
        };
    }
    Ok(match attempts.last() {
        Some(n) => LogSource::Attempt(*n),
        None => LogSource::Empty,
    })
}

/// Whether `kubectl logs -f` on `attempt` keeps waiting for more once it read everything:
/// not when the pod is gone (or is another pod of the same name), a newer attempt has a log
/// file, or the container is known to run no more.
pub fn keep_following(
    pod: Option<&Pod>,
    uid: &str,
    container: &str,
    attempt: u32,
    attempts: &[u32],
) -> bool {
    let Some(pod) = pod else { return false };
    if pod.metadata.uid.as_deref() != Some(uid) {
        return false;
    }
    if attempts.iter().any(|a| *a > attempt) {
        return false;
    }
    match container_status(pod, container).and_then(|c| c.state.as_ref()) {
        Some(s) => s.terminated.is_none(),
        None => true,
    }
}

/// The attempts a container's log directory holds: the `N` of every `N.log`, sorted.
pub fn attempts_of(names: impl IntoIterator<Item = String>) -> Vec<u32> {
    let mut v: Vec<u32> = names
        .into_iter()
        .filter_map(|n| n.strip_suffix(".log").and_then(|s| s.parse().ok()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The stream a CRI log line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `stdout`.
    Stdout,
    /// `stderr`.
    Stderr,
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage<'a> {
    /// When the runtime wrote it.
    pub timestamp: Timestamp,
    /// The timestamp as written.
    pub time_text: &'a str,
    /// Where the container wrote it.
    pub stream: Stream,
    /// The text; a partial line (`P`) without its newline.
    pub log: &'a [u8],
}

/// Parses a CRI log line, `<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <text>` (`parseCRILog`,
/// with its errors).
pub fn parse_cri_line(line: &[u8]) -> Result<LogMessage<'_>, String> {
    let mut rest = line;
    let mut field = |what: &str| -> Result<&[u8], String> {
        let idx = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| format!("{what} is not found"))?;
        let f = &rest[..idx];
        rest = &rest[idx + 1..];
        Ok(f)
    };
    let ts = field("timestamp")?;
    let time_text = std::str::from_utf8(ts).map_err(|_| "timestamp is not UTF-8".to_string())?;
    let timestamp: Timestamp = time_text.parse().map_err(|e| {
        format!("unexpected timestamp format \"2006-01-02T15:04:05.999999999Z07:00\": {e}")
    })?;
    let stream = match field("stream type")? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => {
            return Err(format!(
                "unexpected stream type {:?}",
                String::from_utf8_lossy(other)
            ));
        }
    };
    let tags = field("log tag")?;
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    let mut log = rest;
    if partial && log.last() == Some(&b'\n') {
        log = &log[..log.len() - 1];
    }
    Ok(LogMessage {
        timestamp,
        time_text,
        stream,
        log,
    })
}

/// A timestamp as Go's `Format(time.RFC3339Nano)` writes the parsed time: trailing zeros of
/// the fraction dropped, and the dot with them when nothing is left.
pub fn rfc3339_nano(text: &str) -> String {
    let Some(dot) = text.find('.') else {
        return text.to_string();
    };
    let digits = text[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let frac = text[dot + 1..dot + 1 + digits].trim_end_matches('0');
    let zone = &text[dot + 1 + digits..];
    if frac.is_empty() {
        format!("{}{zone}", &text[..dot])
    } else {
        format!("{}.{frac}{zone}", &text[..dot])
    }
}

/// Lines longer than this without a newline are taken as they are (containerd splits at
/// 16 KiB, so only a damaged file has them): what a reader holds stays bounded.
pub const MAX_PENDING: usize = 1 << 20;

/// Turns the bytes of a CRI log file into what the client gets (`ReadLogs` with its
/// `logWriter`): one stream with stdout and stderr interleaved as written.
#[derive(Debug)]
pub struct LogReader {
    since: Option<Timestamp>,
    timestamps: bool,
    remain: u64,
    /// Lines still to send when `tailLines` is set and not following.
    limited: Option<u64>,
    is_new_line: bool,
    pending: Vec<u8>,
    done: bool,
}

impl LogReader {
    /// A reader for `opts`, positioned (by the caller) at the start of the tail.
    pub fn new(opts: &LogOptions) -> Self {
        LogReader {
            since: opts.since,
            timestamps: opts.timestamps,
            remain: opts.bytes.unwrap_or(u64::MAX),
            limited: if opts.follow { None } else { opts.tail },
            is_new_line: true,
            pending: Vec::new(),
            done: opts.bytes == Some(0),
        }
    }

    /// Whether nothing more will be sent (the byte or line limit is reached).
    pub fn is_done(&self) -> bool {
        self.done || self.limited == Some(0)
    }

    /// Feeds bytes read from the file and appends the client's bytes to `out`. An
    /// incomplete last line waits for the rest.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while !self.is_done() {
            let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') else {
                break;
            };
            let end = start + nl + 1;
            let line = std::mem::take(&mut self.pending);
            self.line(&line[start..end], out);
            self.pending = line;
            start = end;
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_PENDING {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, out);
        }
        if self.is_done() {
            self.pending.clear();
        }
    }

    /// The end of the file when not following: an incomplete last line is sent too.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.pending);
        if !line.is_empty() {
            self.line(&line, out);
        }
        self.done = true;
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if self.is_done() {
            return;
        }
        // A line that does not parse is skipped (the kubelet logs it).
        let Ok(msg) = parse_cri_line(line) else {
            return;
        };
        self.write(&msg, out);
        if let Some(n) = self.limited.as_mut() {
            *n = n.saturating_sub(1);
        }
        self.is_new_line = msg.log.last().is_none_or(|b| *b == b'\n');
    }

    fn write(&mut self, msg: &LogMessage<'_>, out: &mut Vec<u8>) {
        if self.since.is_some_and(|s| msg.timestamp < s) {
            return;
        }
        let mut line = Vec::with_capacity(msg.log.len() + 40);
        if self.timestamps && self.is_new_line {
            line.extend_from_slice(rfc3339_nano(msg.time_text).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(msg.log);
        let n = usize::try_from(self.remain)
            .unwrap_or(usize::MAX)
            .min(line.len());
        out.extend_from_slice(&line[..n]);
        self.remain -= n as u64;
        if self.remain == 0 {
            self.done = true;
        }
    }
}

/// Where the last `n` lines of a file start (`tail.FindTailLineStartIndex`): an incomplete
/// last line does not count; `None` is the whole file.
pub fn tail_start<F: Read + Seek>(f: &mut F, n: Option<u64>) -> std::io::Result<u64> {
    const BLOCK: u64 = 1024;
    let Some(n) = n else { return Ok(0) };
    let size = f.seek(SeekFrom::End(0))?;
    let mut left = size;
    let mut count = 0u64;
    let mut buf = Vec::new();
    let mut right = size;
    while right > 0 && count <= n {
        left = right.saturating_sub(BLOCK);
        let len = usize::try_from(right - left).unwrap_or(0);
        buf.resize(len, 0);
        f.seek(SeekFrom::Start(left))?;
        f.read_exact(&mut buf)?;
        count += buf.iter().filter(|b| **b == b'\n').count() as u64;
        right = left;
    }
    let mut slice = &buf[..];
    while count > n {
        let Some(idx) = slice.iter().position(|b| *b == b'\n') else {
            break;
        };
        slice = &slice[idx + 1..];
        left += idx as u64 + 1;
        count -= 1;
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Cursor;

    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };

    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn now() -> Timestamp {
        "2020-09-27T11:18:10Z".parse().unwrap()
    }

    /// Reads `file` as a whole with `opts` (what a request without follow gets).
    fn read(file: &str, opts: &LogOptions) -> String {
        let mut cur = Cursor::new(file.as_bytes().to_vec());
        let start = tail_start(&mut cur, opts.tail).unwrap();
        let mut r = LogReader::new(opts);
        let mut out = Vec::new();
        // Fed in small pieces, as reads of a growing file arrive.
        for chunk in file.as_bytes()[usize::try_from(start).unwrap()..].chunks(7) {
            r.feed(chunk, &mut out);
        }
        r.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    // TestLogOptions.
    #[test]
    fn options_from_the_query() {
        assert_eq!(log_options(&q(&[]), now()).unwrap(), LogOptions::default());
        let o = log_options(&q(&[("tailLines", "8"), ("limitBytes", "64")]), now()).unwrap();
        assert_eq!((o.tail, o.bytes), (Some(8), Some(64)));
        let o = log_options(&q(&[("sinceSeconds", "10")]), now()).unwrap();
        assert_eq!(o.since.unwrap().to_string(), "2020-09-27T11:18:00Z");
        let o = log_options(&q(&[("sinceTime", "2020-09-27T11:18:02Z")]), now()).unwrap();
        assert_eq!(o.since.unwrap().to_string(), "2020-09-27T11:18:02Z");
        let o = log_options(
            &q(&[
                ("follow", "true"),
                ("timestamps", "1"),
                ("previous", "false"),
            ]),
            now(),
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        // The legacy `tail`.
        assert_eq!(
            log_options(&q(&[("tail", "3")]), now()).unwrap().tail,
            Some(3)
        );
        assert_eq!(
            log_options(&q(&[("tailLines", "3"), ("tail", "all")]), now())
                .unwrap()
                .tail,
            None
        );
    }

    #[test]
    fn bad_options_are_refused_as_the_kubelet_does() {
        for bad in [
            ("tailLines", "x"),
            ("follow", "yes"),
            ("sinceTime", "yesterday"),
        ] {
            let e = log_options(&q(&[bad]), now()).unwrap_err();
            assert_eq!(e.code, 400, "{bad:?}");
            assert_eq!(e.message, r#"{"message": "Unable to decode query."}"#);
        }
        for bad in [
            vec![("tailLines", "-1")],
            vec![("limitBytes", "0")],
            vec![("sinceSeconds", "0")],
            vec![("sinceSeconds", "5"), ("sinceTime", "2020-09-27T11:18:02Z")],
        ] {
            let e = log_options(&q(&bad), now()).unwrap_err();
            assert_eq!(e.code, 422, "{bad:?}");
        }
    }

    const FILE: &str = "2020-09-27T11:18:01.00000000Z stdout F line1\n\
                        2020-09-27T11:18:02.00000000Z stdout F line2\n\
                        2020-09-27T11:18:03.00000000Z stdout F line3\n";

    // TestReadLogs, in the CRI format.
    #[test]
    fn reads_with_every_option() {
        let opts = |pairs: &[(&str, &str)]| log_options(&q(pairs), now()).unwrap();
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "line1\nline2\nline3\n"),
            (&[("tailLines", "2")], "line2\nline3\n"),
            (&[("tailLines", "4")], "line1\nline2\nline3\n"),
            (&[("tailLines", "0")], ""),
            (&[("limitBytes", "9")], "line1\nlin"),
            (&[("limitBytes", "100")], "line1\nline2\nline3\n"),
            (&[("sinceTime", "2020-09-27T11:18:02Z")], "line2\nline3\n"),
            (&[("sinceSeconds", "1")], ""),
            (&[("follow", "true")], "line1\nline2\nline3\n"),
            (&[("follow", "true"), ("tailLines", "2")], "line2\nline3\n"),
            (
                &[("follow", "true"), ("sinceTime", "2020-09-27T11:18:02Z")],
                "line2\nline3\n",
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(read(FILE, &opts(pairs)), *want, "{pairs:?}");
        }
        let zero = LogOptions {
            bytes: Some(0),
            ..Default::default()
        };
        assert_eq!(read(FILE, &zero), "");
    }

    // TestParseLog (the CRI cases).
    #[test]
    fn parses_cri_lines() {
        let ts: Timestamp = "2016-10-20T18:39:20.57606443Z".parse().unwrap();
        let m = parse_cri_line(b"2016-10-20T18:39:20.57606443Z stdout F cri stdout test log\n")
            .unwrap();
        assert_eq!(
            (m.timestamp, m.stream, m.log),
            (ts, Stream::Stdout, &b"cri stdout test log\n"[..])
        );
        let m = parse_cri_line(b"2016-10-20T18:39:20.57606443Z stderr F cri stderr test log\n")
            .unwrap();
        assert_eq!(m.stream, Stream::Stderr);
        assert!(parse_cri_line(b"unsupported log format test log\n").is_err());
        let m =
            parse_cri_line(b"2016-10-20T18:39:20.57606443Z stdout P cri stdout partial test log\n")
                .unwrap();
        assert_eq!(m.log, b"cri stdout partial test log");
        let m = parse_cri_line(
            b"2016-10-20T18:39:20.57606443Z stdout P:TAG1:TAG2 cri stdout partial test log\n",
        )
        .unwrap();
        assert_eq!(m.log, b"cri stdout partial test log");
        assert_eq!(
            parse_cri_line(b"2016-10-20T18:39:20Z stdin F x\n").unwrap_err(),
            "unexpected stream type \"stdin\""
        );
        assert_eq!(
            parse_cri_line(b"2016-10-20T18:39:20Z stdout\n").unwrap_err(),
            "stream type is not found"
        );
        assert_eq!(
            parse_cri_line(b"2016-10-20T18:39:20Z stdout F").unwrap_err(),
            "log tag is not found"
        );
        // A timestamp with an offset, as containerd writes in a non-UTC zone.
        let m = parse_cri_line(b"2016-10-20T20:39:20.57606443+02:00 stdout F x\n").unwrap();
        assert_eq!(m.timestamp, ts);
    }

    #[test]
    fn partial_lines_are_joined_and_prefixed_once() {
        let file = "2020-09-27T11:18:01.5Z stdout P hel\n\
                    2020-09-27T11:18:01.6Z stdout P lo wor\n\
                    2020-09-27T11:18:01.7Z stdout F ld\n\
                    2020-09-27T11:18:02.000000100Z stderr F oops\n";
        assert_eq!(read(file, &LogOptions::default()), "hello world\noops\n");
        let ts = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            read(file, &ts),
            "2020-09-27T11:18:01.5Z hello world\n2020-09-27T11:18:02.0000001Z oops\n"
        );
    }

    // TestWriteLogs and TestWriteLogsWithBytesLimit.
    #[test]
    fn timestamps_since_and_byte_limits() {
        // time.Unix(1234, 43210) in UTC, as Go's RFC3339Nano prints it.
        let t = "1970-01-01T00:20:34.00004321Z";
        assert_eq!(rfc3339_nano("1970-01-01T00:20:34.000043210Z"), t);
        assert_eq!(
            rfc3339_nano("2020-09-27T11:18:01.000000000Z"),
            "2020-09-27T11:18:01Z"
        );
        assert_eq!(rfc3339_nano("2020-09-27T11:18:01Z"), "2020-09-27T11:18:01Z");
        assert_eq!(
            rfc3339_nano("2020-09-27T11:18:01.120+02:00"),
            "2020-09-27T11:18:01.12+02:00"
        );
        let line = format!("{t} stdout F abcdefg\n");
        let err_line = format!("{t} stderr F abcdefg\n");
        let three = line.repeat(3);
        let since_after = LogOptions {
            since: Some("1970-01-01T00:20:35Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(read(&line, &since_after), "");
        let with_ts = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(read(&err_line, &with_ts), format!("{t} abcdefg\n"));
        let limit = |b: usize, timestamps: bool| LogOptions {
            bytes: Some(b as u64),
            timestamps,
            ..Default::default()
        };
        assert_eq!(read(&three, &limit(3, false)), "abc");
        assert_eq!(read(&three, &limit(8 + 3, false)), "abcdefg\nabc");
        assert_eq!(read(&three, &limit(24, false)), "abcdefg\n".repeat(3));
        let mixed = format!("{line}{err_line}{err_line}");
        assert_eq!(read(&mixed, &limit(11, false)), "abcdefg\nabc");
        assert_eq!(
            read(&three, &limit(t.len() + 1 + 8 + 2, true)),
            format!("{t} abcdefg\n{}", &t[..2])
        );
    }

    #[test]
    fn tail_counts_complete_lines_from_the_end() {
        let mut long = String::new();
        for i in 0..500 {
            long.push_str(&format!("2020-09-27T11:18:01Z stdout F line {i}\n"));
        }
        let tail = LogOptions {
            tail: Some(3),
            ..Default::default()
        };
        assert_eq!(read(&long, &tail), "line 497\nline 498\nline 499\n");
        // An incomplete last line does not count as one, but is sent at the end.
        let cut = format!("{long}2020-09-27T11:18:01Z stdout F unfinished");
        assert_eq!(read(&cut, &tail), "line 497\nline 498\nline 499\n");
        let mut cur = Cursor::new(cut.as_bytes().to_vec());
        assert_eq!(tail_start(&mut cur, Some(0)).unwrap(), long.len() as u64);
        assert_eq!(tail_start(&mut cur, Some(10_000)).unwrap(), 0);
        assert_eq!(tail_start(&mut cur, None).unwrap(), 0);
        let follow_tail = LogOptions {
            tail: Some(1),
            follow: true,
            ..Default::default()
        };
        let mut r = LogReader::new(&follow_tail);
        let mut out = Vec::new();
        r.feed(b"2020-09-27T11:18:01Z stdout F a\n2020-09-27T11:18:01Z stdout F b\n2020-09-27T11:18:01Z stdout F c", &mut out);
        assert_eq!(
            out, b"a\nb\n",
            "following sends every line after the tail, and waits for the rest"
        );
        r.feed(b"\n", &mut out);
        assert_eq!(out, b"a\nb\nc\n");
    }

    fn status(state: ContainerState, last_terminated: bool) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            state: Some(state),
            last_state: last_terminated.then(|| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some("containerd://old".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning { started_at: None }),
            ..Default::default()
        }
    }

    #[test]
    fn which_log_and_the_kubelets_refusals() {
        let run = status(running(), false);
        assert_eq!(
            choose_log("p", "c", Some(&run), &[0, 1, 2], false),
            Ok(LogSource::Attempt(2))
        );
        assert_eq!(
            choose_log("p", "c", Some(&run), &[0, 1, 2], true),
            Ok(LogSource::Attempt(1))
        );
        assert_eq!(
            choose_log("p", "c", Some(&run), &[], false),
            Ok(LogSource::Empty)
        );
        let e = choose_log("p", "c", Some(&run), &[0], true).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                400,
                r#"previous terminated container "c" in pod "p" not found"#
            )
        );
        let e = choose_log(
            "p",
            "c",
            Some(&status(waiting("ContainerCreating"), false)),
            &[],
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            r#"container "c" in pod "p" is waiting to start: ContainerCreating"#
        );
        let e = choose_log(
            "p",
            "c",
            Some(&status(waiting("ImagePullBackOff"), false)),
            &[],
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            r#"container "c" in pod "p" is waiting to start: trying and failing to pull image"#
        );
        let e = choose_log(
            "p",
            "c",
            Some(&status(waiting("ErrImagePull"), false)),
            &[],
            false,
        )
        .unwrap_err();
        assert!(e.message.ends_with("image can't be pulled"));
        // Waiting to restart after a crash: the last attempt's log.
        assert_eq!(
            choose_log(
                "p",
                "c",
                Some(&status(waiting("CrashLoopBackOff"), true)),
                &[0],
                false
            ),
            Ok(LogSource::Attempt(0))
        );
        let e = choose_log("p", "c", None, &[], false).unwrap_err();
        assert_eq!(e.message, r#"container "c" in pod "p" is not available"#);
        let blank = ContainerStatus {
            name: "c".into(),
            ..Default::default()
        };
        assert!(
            choose_log("p", "c", Some(&blank), &[], false)
                .unwrap_err()
                .message
                .ends_with("is waiting to start - no logs yet")
        );
    }

    #[test]
    fn following_stops_when_the_log_moves_on_or_the_pod_goes() {
        let mut pod = Pod::default();
        pod.metadata.uid = Some("u1".into());
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            container_statuses: Some(vec![status(running(), false)]),
            ..Default::default()
        });
        assert!(keep_following(Some(&pod), "u1", "c", 0, &[0]));
        assert!(!keep_following(Some(&pod), "u1", "c", 0, &[0, 1]));
        assert!(!keep_following(Some(&pod), "u2", "c", 0, &[0]));
        assert!(!keep_following(None, "u1", "c", 0, &[0]));
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            container_statuses: Some(vec![status(
                ContainerState {
                    terminated: Some(ContainerStateTerminated::default()),
                    ..Default::default()
                },
                false,
            )]),
            ..Default::default()
        });
        assert!(!keep_following(Some(&pod), "u1", "c", 0, &[0]));
    }

    #[test]
    fn attempts_from_file_names() {
        let names = ["2.log", "0.log", "10.log", "x.log", "1.log.gz", "3"];
        assert_eq!(
            attempts_of(names.iter().map(|s| s.to_string())),
            vec![0, 2, 10]
        );
    }
}
