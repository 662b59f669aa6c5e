//! `xdp-tcp stat PATH`: the inspector's client. Asks a stack's control socket
//! (`StackBuilder::control_socket`) for its statistics (JSON, see `xdp_tcp::api::StackStats`)
//! and prints them as `ss -tinm` prints connections and `nstat` prints counters, as JSON, or as
//! Prometheus text.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How `stat` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Connections as `ss -tinm`, then the non-zero counters as `nstat`.
    Text,
    /// The stack's answer as it is.
    Json,
    /// Prometheus text exposition, one sample per counter and engine.
    Prometheus,
}

/// One `stats` request to the control socket at `path`: the raw JSON answer.
pub fn fetch(path: &Path) -> io::Result<String> {
    request(path, "stats")
}

/// One request line to the control socket at `path`: the raw answer.
pub fn request(path: &Path, line: &str) -> io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(line.as_bytes())?;
    s.write_all(b"\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// An answer to a `pcap` request as one line: `running /tmp/x.pcap: 12 packets, 2048 bytes`.
pub fn pcap_request(raw: &str) -> Result<String, String> {
    let v = parse(raw)?;
    let p = v
        .get("pcap")
        .ok_or_else(|| format!("bad answer: {raw:?}"))?;
    let mut line = format!(
        "{} {}: {} packets, {} bytes",
        p["state"].as_str().unwrap_or("?"),
        p["file"].as_str().unwrap_or("?"),
        u(p, "packets"),
        u(p, "bytes")
    );
    if let Some(e) = p.get("error").and_then(Value::as_str) {
        line.push_str(&format!(" ({e})"));
    }
    Ok(line)
}

/// Parses an answer; the stack's `{"error": ...}` becomes an error.
pub fn parse(raw: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("bad answer: {e}: {raw:?}"))?;
    if let Some(e) = v.get("error") {
        return Err(format!("the stack says: {e}"));
    }
    Ok(v)
}

/// Renders a parsed answer.
pub fn render(v: &Value, format: Format) -> String {
    match format {
        Format::Json => format!("{v}\n"),
        Format::Text => text(v),
        Format::Prometheus => prometheus(v),
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn rate(bps: u64) -> String {
    let bits = bps as f64 * 8.0;
    if bits >= 1e9 {
        format!("{:.1}Gbps", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.1}Mbps", bits / 1e6)
    } else if bits >= 1e3 {
        format!("{:.1}Kbps", bits / 1e3)
    } else {
        format!("{bits:.0}bps")
    }
}

fn conns(v: &Value) -> impl Iterator<Item = &Value> {
    v.get("engines")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|e| {
            e.get("conns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
}

/// `ss -tinm`-like connection lines (the info line indented under each), then `nstat`-like
/// counters (non-zero ones, summed over the engines).
pub fn text(v: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<11} {:>7} {:>7} {:<22} {:<22}",
        "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"
    );
    for c in conns(v) {
        let st = |k| c.get(k).and_then(Value::as_str).unwrap_or("?");
        let _ = writeln!(
            s,
            "{:<11} {:>7} {:>7} {:<22} {:<22}",
            st("state"),
            u(c, "recv_q"),
            u(c, "send_q"),
            st("local"),
            st("remote")
        );
        let ssthresh = match u(c, "ssthresh") {
            n if n >= u64::from(u32::MAX) => String::new(),
            n => format!(" ssthresh:{n}"),
        };
        let _ = writeln!(
            s,
            "\t engine:{} rto:{} rtt:{}/{} mss:{} cwnd:{}{} bytes_sent:{} \
             bytes_acked:{} bytes_received:{} segs_out:{} segs_in:{} send {} delivery_rate {} \
             retrans:{}/{} reordering:{} snd_wnd:{} rcv_wnd:{} unacked:{} lost:{} sacked:{}{}",
            u(c, "engine"),
            ms(u(c, "rto_us")),
            ms(u(c, "rtt_us")),
            ms(u(c, "rttvar_us")),
            u(c, "mss"),
            u(c, "cwnd"),
            ssthresh,
            u(c, "bytes_sent"),
            u(c, "bytes_acked"),
            u(c, "bytes_received"),
            u(c, "segs_out"),
            u(c, "segs_in"),
            // ss's "send" rate: cwnd over srtt
            match u(c, "rtt_us") {
                0 => "-".to_string(),
                rtt => rate(u(c, "cwnd") * 1_000_000 / rtt),
            },
            rate(u(c, "delivery_rate")),
            u(c, "backoff"),
            u(c, "total_retrans"),
            u(c, "reordering"),
            u(c, "snd_wnd"),
            u(c, "rcv_wnd"),
            u(c, "bytes_in_flight"),
            u(c, "lost_bytes"),
            u(c, "sacked_bytes"),
            if c.get("in_recovery").and_then(Value::as_bool) == Some(true) {
                " recovery"
            } else {
                ""
            },
        );
    }
    let _ = writeln!(
        s,
        "#kernel-bypass: xdp-tcp counters (non-zero, all engines)"
    );
    if let Some(m) = v.get("counters").and_then(Value::as_object) {
        for (k, n) in m {
            let n = n.as_u64().unwrap_or(0);
            if n > 0 {
                let _ = writeln!(s, "{k:<32} {n:>16}");
            }
        }
    }
    s
}

/// A counter's name as a Prometheus metric name: `xdp_tcp_` and the name with every character
/// outside `[A-Za-z0-9_]` made `_` (`xsk.rx_ring_full` -> `xdp_tcp_xsk_rx_ring_full`).
pub fn metric_name(counter: &str) -> String {
    let mut out = String::from("xdp_tcp_");
    out.extend(
        counter
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    out
}

/// Gauges among the counters; everything else only grows.
fn is_gauge(counter: &str) -> bool {
    matches!(counter, "TcpCurrEstab" | "host.conns")
}

/// Prometheus text: each counter once per engine (label `engine`).
pub fn prometheus(v: &Value) -> String {
    let engines: Vec<&Value> = v
        .get("engines")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut s = String::new();
    let Some(first) = engines
        .first()
        .and_then(|e| e.get("counters"))
        .and_then(Value::as_object)
    else {
        return s;
    };
    for name in first.keys() {
        let metric = metric_name(name);
        let kind = if is_gauge(name) { "gauge" } else { "counter" };
        let _ = writeln!(s, "# TYPE {metric} {kind}");
        for e in &engines {
            let n = e
                .get("counters")
                .and_then(|c| c.get(name))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let _ = writeln!(s, "{metric}{{engine=\"{}\"}} {n}", u(e, "queue"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        serde_json::from_str(
            r#"{"counters":{"TcpActiveOpens":0,"TcpPassiveOpens":2,"xsk.rx_ring_full":0},
            "engines":[{"queue":0,"uptime_ms":5,"counters":{"TcpActiveOpens":0,
            "TcpPassiveOpens":2,"xsk.rx_ring_full":0,"TcpCurrEstab":1},"conns":[{"engine":0,
            "local":"10.0.0.1:7","remote":"10.0.0.2:40000","state":"ESTAB","recv_q":3,
            "send_q":5,"rtt_us":1500,"rttvar_us":250,"rto_us":201000,"mss":1448,"cwnd":14480,
            "ssthresh":18446744073709551615,"bytes_sent":10,"bytes_acked":5,"bytes_received":7,
            "total_retrans":1,"backoff":0,"reordering":0,"delivery_rate":125000,
            "in_recovery":false,"segs_in":4,"segs_out":6}]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn text_lists_each_connection_like_ss_and_nonzero_counters_like_nstat() {
        let t = text(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("State"));
        let conn: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(conn, ["ESTAB", "3", "5", "10.0.0.1:7", "10.0.0.2:40000"]);
        assert!(lines[2].contains("rtt:1.500/0.250"), "{}", lines[2]);
        assert!(lines[2].contains("rto:201.000"));
        assert!(lines[2].contains("delivery_rate 1.0Mbps"));
        assert!(lines[2].contains("retrans:0/1"));
        assert!(
            !lines[2].contains("ssthresh"),
            "an infinite ssthresh is not printed"
        );
        assert!(t.contains("TcpPassiveOpens"));
        assert!(!t.contains("TcpActiveOpens"), "zero counters are left out");
    }

    #[test]
    fn prometheus_gives_one_sample_per_engine_with_valid_names() {
        let p = prometheus(&sample());
        assert!(p.contains("# TYPE xdp_tcp_TcpPassiveOpens counter\n"));
        assert!(p.contains("xdp_tcp_TcpPassiveOpens{engine=\"0\"} 2\n"));
        assert!(p.contains("# TYPE xdp_tcp_TcpCurrEstab gauge\n"));
        assert!(p.contains("xdp_tcp_xsk_rx_ring_full{engine=\"0\"} 0\n"));
        for line in p.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
        }
    }

    #[test]
    fn an_error_answer_is_an_error() {
        assert!(parse(r#"{"error":"unknown request"}"#).is_err());
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"counters":{},"engines":[]}"#).is_ok());
    }
}
