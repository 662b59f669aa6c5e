//! RESP2 (the Redis protocol) on the wire: requests as arrays of bulk strings (what clients
//! and redis-benchmark send) or inline commands (`PING\r\n`, what telnet users type), and the
//! replies' encodings.

/// A request that can never parse: the connection is answered with an error and closed, as
/// Redis does.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

/// Largest bulk string and array accepted (Redis's proto-max-bulk-len is 512 MiB; a server
/// holding requests whole in memory wants less).
pub const MAX_BULK: usize = 64 * 1024 * 1024;
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline command or header line.
pub const MAX_INLINE: usize = 64 * 1024;

/// A request's arguments and the bytes it took; `None` while incomplete.
pub type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, ProtocolError>;

/// Parses one request at the start of `buf`: `Ok(None)` when it is not complete yet, else the
/// arguments and the bytes it took.
pub fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buf),
        Some(_) => parse_inline(buf),
    }
}

/// A line ending in CRLF at `buf[at..]`: its content and the offset after it.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buf[at..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&rest[..i], at + i + 2))),
        None if rest.len() > MAX_INLINE => Err(ProtocolError("too big inline request")),
        None => Ok(None),
    }
}

fn number(digits: &[u8], what: &'static str) -> Result<i64, ProtocolError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError(what))
}

fn parse_array(buf: &[u8]) -> Parsed {
    let Some((head, mut at)) = line(buf, 0)? else {
        return Ok(None);
    };
    let n = number(&head[1..], "invalid multibulk length")?;
    if n > MAX_ARGS as i64 {
        return Err(ProtocolError("invalid multibulk length"));
    }
    let mut args = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        let Some((h, next)) = line(buf, at)? else {
            return Ok(None);
        };
        if h.first() != Some(&b'$') {
            return Err(ProtocolError("expected '$'"));
        }
        let len = number(&h[1..], "invalid bulk length")?;
        if !(0..=MAX_BULK as i64).contains(&len) {
            return Err(ProtocolError("invalid bulk length"));
        }
        let end = next + len as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not followed by CRLF"));
        }
        args.push(buf[next..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

fn parse_inline(buf: &[u8]) -> Parsed {
    let Some((l, at)) = line(buf, 0)? else {
        return Ok(None);
    };
    let args = l
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok(Some((args, at)))
}

pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn error(out: &mut Vec<u8>, s: &str) {
    out.push(b'-');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn integer(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(format!(":{n}\r\n").as_bytes());
}

pub fn bulk(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(b"$-1\r\n"),
        Some(v) => {
            out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }
}

pub fn array_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn arrays_of_bulk_strings_parse_whole_and_not_before() {
        let req = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n";
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse(req),
            Ok(Some((args(&["SET", "key", "va\r\nl"]), req.len())))
        );
        // binary-safe, empty strings, and what follows is left for the next call
        let two = b"*2\r\n$0\r\n\r\n$2\r\n\x00\xff\r\n*1\r\n$4\r\nPING\r\n";
        let (a, used) = parse(two).unwrap().unwrap();
        assert_eq!(a, vec![vec![], vec![0, 0xff]]);
        assert_eq!(parse(&two[used..]), Ok(Some((args(&["PING"]), 14))));
        assert_eq!(parse(b"*0\r\n"), Ok(Some((vec![], 4))));
    }

    #[test]
    fn inline_commands_split_on_spaces() {
        assert_eq!(parse(b"PING"), Ok(None));
        assert_eq!(
            parse(b"set  a 1\r\nGET a\r\n"),
            Ok(Some((args(&["set", "a", "1"]), 10)))
        );
        assert_eq!(parse(b"\r\n"), Ok(Some((vec![], 2))));
    }

    #[test]
    fn malformed_requests_are_protocol_errors() {
        assert_eq!(
            parse(b"*x\r\n"),
            Err(ProtocolError("invalid multibulk length"))
        );
        assert_eq!(
            parse(b"*1\r\n+PING\r\n"),
            Err(ProtocolError("expected '$'"))
        );
        assert_eq!(
            parse(b"*1\r\n$-3\r\n"),
            Err(ProtocolError("invalid bulk length"))
        );
        assert_eq!(
            parse(b"*1\r\n$4\r\nPINGxx"),
            Err(ProtocolError("bulk string not followed by CRLF"))
        );
        let huge = format!("*1\r\n${}\r\n", MAX_BULK + 1);
        assert_eq!(
            parse(huge.as_bytes()),
            Err(ProtocolError("invalid bulk length"))
        );
        assert_eq!(
            parse(&vec![b'a'; MAX_INLINE + 1]),
            Err(ProtocolError("too big inline request"))
        );
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = Vec::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR x");
        integer(&mut out, -3);
        bulk(&mut out, Some(b"ab"));
        bulk(&mut out, None);
        array_len(&mut out, 2);
        assert_eq!(out, b"+OK\r\n-ERR x\r\n:-3\r\n$2\r\nab\r\n$-1\r\n*2\r\n");
    }
}
