//! The key-value store and the commands on it: PING, ECHO, GET, SET (EX, PX, NX, XX), DEL,
//! INCR, MGET, MSET, EXISTS, and enough of CONFIG GET for redis-benchmark. Expiry is lazy (a
//! key is dropped when read after its time); the clock is the caller's, in milliseconds.

use std::collections::HashMap;

use super::proto::{array_len, bulk, error, integer, simple};

#[derive(Default)]
pub struct Store {
    map: HashMap<Vec<u8>, (Vec<u8>, Option<u64>)>,
}

fn upper(v: &[u8]) -> String {
    String::from_utf8_lossy(v).to_ascii_uppercase()
}

fn wrong_args(out: &mut Vec<u8>, cmd: &str) {
    error(
        out,
        &format!(
            "ERR wrong number of arguments for '{}' command",
            cmd.to_ascii_lowercase()
        ),
    );
}

impl Store {
    fn live(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Vec<u8>> {
        if self
            .map
            .get(key)
            .is_some_and(|(_, exp)| exp.is_some_and(|t| t <= now_ms))
        {
            self.map.remove(key);
        }
        self.map.get_mut(key).map(|(v, _)| v)
    }

    /// Runs one command, appending its reply to `out`.
    pub fn execute(&mut self, args: &[Vec<u8>], now_ms: u64, out: &mut Vec<u8>) {
        let Some(name) = args.first() else {
            return; // an empty inline line: Redis answers nothing
        };
        let cmd = upper(name);
        let a = &args[1..];
        match (cmd.as_str(), a.len()) {
            ("PING", 0) => simple(out, "PONG"),
            ("PING", 1) | ("ECHO", 1) => bulk(out, Some(&a[0])),
            ("GET", 1) => {
                let v = self.live(&a[0], now_ms).map(|v| v.as_slice());
                bulk(out, v)
            }
            ("SET", 2..) => self.set(a, now_ms, out),
            ("DEL", 1..) | ("EXISTS", 1..) => {
                let mut n = 0;
                for k in a {
                    if self.live(k, now_ms).is_some() {
                        n += 1;
                        if cmd == "DEL" {
                            self.map.remove(k);
                        }
                    }
                }
                integer(out, n)
            }
            ("INCR", 1) => {
                let cur = self.live(&a[0], now_ms).map(|v| v.clone());
                let n = match cur {
                    None => Some(0),
                    Some(v) => std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok()),
                };
                match n.and_then(|n| n.checked_add(1)) {
                    Some(n) => {
                        let exp = self.map.get(&a[0]).and_then(|(_, e)| *e);
                        self.map
                            .insert(a[0].clone(), (n.to_string().into_bytes(), exp));
                        integer(out, n)
                    }
                    None if n.is_none() => {
                        error(out, "ERR value is not an integer or out of range")
                    }
                    None => error(out, "ERR increment or decrement would overflow"),
                }
            }
            ("MGET", 1..) => {
                array_len(out, a.len());
                for k in a {
                    let v = self.live(k, now_ms).map(|v| v.clone());
                    bulk(out, v.as_deref());
                }
            }
            ("MSET", n) if n >= 2 && n % 2 == 0 => {
                for kv in a.chunks(2) {
                    self.map.insert(kv[0].clone(), (kv[1].clone(), None));
                }
                simple(out, "OK")
            }
            // redis-benchmark asks for `save` and `appendonly` before it starts.
            ("CONFIG", 2) if upper(&a[0]) == "GET" => array_len(out, 0),
            ("PING" | "ECHO" | "GET" | "SET" | "DEL" | "EXISTS" | "INCR" | "MGET" | "MSET", _) => {
                wrong_args(out, &cmd)
            }
            _ => {
                let shown: String = String::from_utf8_lossy(name).chars().take(64).collect();
                error(out, &format!("ERR unknown command '{shown}'"))
            }
        }
    }

    fn set(&mut self, a: &[Vec<u8>], now_ms: u64, out: &mut Vec<u8>) {
        let (mut exp, mut nx, mut xx) = (None, false, false);
        let mut i = 2;
        while i < a.len() {
            let opt = upper(&a[i]);
            match opt.as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "EX" | "PX" if i + 1 < a.len() && exp.is_none() => {
                    let n = std::str::from_utf8(&a[i + 1])
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok());
                    let Some(n) = n.filter(|&n| n > 0) else {
                        return error(out, "ERR invalid expire time in 'set' command");
                    };
                    let ms = if opt == "EX" {
                        (n as u64).saturating_mul(1000)
                    } else {
                        n as u64
                    };
                    exp = Some(now_ms.saturating_add(ms));
                    i += 1;
                }
                _ => return error(out, "ERR syntax error"),
            }
            i += 1;
        }
        if nx && xx {
            return error(out, "ERR syntax error");
        }
        let exists = self.live(&a[0], now_ms).is_some();
        if (nx && exists) || (xx && !exists) {
            return bulk(out, None);
        }
        self.map.insert(a[0].clone(), (a[1].clone(), exp));
        simple(out, "OK")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut Store, now: u64, cmd: &str) -> String {
        let args: Vec<Vec<u8>> = cmd.split(' ').map(|w| w.as_bytes().to_vec()).collect();
        let mut out = Vec::new();
        s.execute(&args, now, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn commands_answer_as_redis() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, 0, "PING"), "+PONG\r\n");
        assert_eq!(run(&mut s, 0, "ping hi"), "$2\r\nhi\r\n");
        assert_eq!(run(&mut s, 0, "GET a"), "$-1\r\n");
        assert_eq!(run(&mut s, 0, "SET a 1"), "+OK\r\n");
        assert_eq!(run(&mut s, 0, "INCR a"), ":2\r\n");
        assert_eq!(run(&mut s, 0, "INCR n"), ":1\r\n");
        assert_eq!(run(&mut s, 0, "GET a"), "$1\r\n2\r\n");
        assert_eq!(run(&mut s, 0, "MSET b x c y"), "+OK\r\n");
        assert_eq!(
            run(&mut s, 0, "MGET a b zz c"),
            "*4\r\n$1\r\n2\r\n$1\r\nx\r\n$-1\r\n$1\r\ny\r\n"
        );
        assert_eq!(run(&mut s, 0, "EXISTS a b zz a"), ":3\r\n");
        assert_eq!(run(&mut s, 0, "DEL a zz b"), ":2\r\n");
        assert_eq!(run(&mut s, 0, "EXISTS a b"), ":0\r\n");
        assert_eq!(run(&mut s, 0, "SET c v NX"), "$-1\r\n");
        assert_eq!(run(&mut s, 0, "SET d v XX"), "$-1\r\n");
        assert_eq!(
            run(&mut s, 0, "INCR c"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run(&mut s, 0, "CONFIG GET save"), "*0\r\n");
    }

    #[test]
    fn expiry_in_seconds_and_milliseconds() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, 1000, "SET k v EX 2"), "+OK\r\n");
        assert_eq!(run(&mut s, 1000, "SET p v px 150"), "+OK\r\n");
        assert_eq!(run(&mut s, 1149, "GET p"), "$1\r\nv\r\n");
        assert_eq!(run(&mut s, 1150, "GET p"), "$-1\r\n");
        assert_eq!(run(&mut s, 2999, "EXISTS k"), ":1\r\n");
        assert_eq!(run(&mut s, 3000, "EXISTS k"), ":0\r\n");
        assert_eq!(
            run(&mut s, 0, "SET k v EX 0"),
            "-ERR invalid expire time in 'set' command\r\n"
        );
        assert_eq!(run(&mut s, 0, "SET k v EX"), "-ERR syntax error\r\n");
        assert_eq!(run(&mut s, 0, "SET k v EX 1 PX 1"), "-ERR syntax error\r\n");
    }

    #[test]
    fn unknown_commands_and_wrong_arity_are_clear_errors() {
        let mut s = Store::default();
        assert_eq!(
            run(&mut s, 0, "FLUSHALL now"),
            "-ERR unknown command 'FLUSHALL'\r\n"
        );
        assert_eq!(
            run(&mut s, 0, "GET"),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            run(&mut s, 0, "MSET a"),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
    }
}
