//! Technical indicators over a price series kept in the mount's key-value store.
//!
//! Mount it at `/live/indicators/{symbol}` (or `/indicators/**`):
//! - `echo "101 102.5 99 …" > /live/indicators/NVDA` stores the series (oldest first; numbers
//!   separated by spaces, commas or newlines);
//! - `cat /live/indicators/NVDA` prints last price, SMA, EMA, RSI and MACD;
//! - `:sma?period=20`, `:ema?period=12`, `:rsi?period=14`, `:macd?fast=12&slow=26&signal=9`,
//!   `:prices` give one indicator (or the stored series);
//! - `ls /live/indicators` lists the symbols; `rm` forgets one.

use avm_plugin::{Entry, Error, Info, Provider, Request, Result, Suffix, export, kv};

struct Indicators;

fn symbol(req: &Request) -> Option<&str> {
    req.capture("symbol")
        .or_else(|| req.capture("**"))
        .filter(|s| !s.is_empty())
}

fn key(sym: &str) -> String {
    format!("prices/{sym}")
}

fn parse_prices(text: &str) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for tok in text.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
        if tok.is_empty() {
            continue;
        }
        let v: f64 = tok.parse().map_err(|_| {
            Error::invalid(format!(
                "{tok:?} is not a price; write numbers separated by spaces, commas or newlines"
            ))
        })?;
        if !v.is_finite() || v <= 0.0 {
            return Err(Error::invalid(format!("{tok} is not a positive price")));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(Error::invalid("no prices given"));
    }
    Ok(out)
}

fn load(sym: &str) -> Result<Vec<f64>> {
    let raw = kv::get(&key(sym)).ok_or_else(|| {
        Error::not_found(format!(
            "no prices for {sym}; write some first: echo \"101 102 103\" > …/{sym}"
        ))
    })?;
    parse_prices(&raw)
}

fn need(name: &str, have: usize, want: usize, sym: &str) -> Result<()> {
    if have < want {
        return Err(Error::invalid(format!(
            "{name} needs at least {want} prices; {sym} has {have}"
        )));
    }
    Ok(())
}

/// Simple moving average of the last `n` prices.
pub fn sma(p: &[f64], n: usize) -> Option<f64> {
    if n == 0 || p.len() < n {
        return None;
    }
    Some(p[p.len() - n..].iter().sum::<f64>() / n as f64)
}

/// Exponential moving average series, seeded with the SMA of the first `n` prices; the first
/// value corresponds to `p[n-1]`.
pub fn ema_series(p: &[f64], n: usize) -> Vec<f64> {
    if n == 0 || p.len() < n {
        return Vec::new();
    }
    let alpha = 2.0 / (n as f64 + 1.0);
    let mut e = p[..n].iter().sum::<f64>() / n as f64;
    let mut out = vec![e];
    for &x in &p[n..] {
        e = alpha * x + (1.0 - alpha) * e;
        out.push(e);
    }
    out
}

/// Wilder's relative strength index over `n` periods.
pub fn rsi(p: &[f64], n: usize) -> Option<f64> {
    if n == 0 || p.len() < n + 1 {
        return None;
    }
    let (mut gain, mut loss) = (0.0, 0.0);
    for w in p[..=n].windows(2) {
        let d = w[1] - w[0];
        if d > 0.0 {
            gain += d;
        } else {
            loss -= d;
        }
    }
    let (mut ag, mut al) = (gain / n as f64, loss / n as f64);
    for w in p[n..].windows(2) {
        let d = w[1] - w[0];
        ag = (ag * (n as f64 - 1.0) + d.max(0.0)) / n as f64;
        al = (al * (n as f64 - 1.0) + (-d).max(0.0)) / n as f64;
    }
    if al == 0.0 {
        return Some(if ag == 0.0 { 50.0 } else { 100.0 });
    }
    Some(100.0 - 100.0 / (1.0 + ag / al))
}

/// MACD line, signal line and histogram (last values).
pub fn macd(p: &[f64], fast: usize, slow: usize, signal: usize) -> Option<(f64, f64, f64)> {
    if fast == 0 || fast >= slow || signal == 0 || p.len() < slow + signal - 1 {
        return None;
    }
    let f = ema_series(p, fast);
    let s = ema_series(p, slow);
    // Align: s[0] is at index slow-1, f[0] at fast-1.
    let line: Vec<f64> = s
        .iter()
        .enumerate()
        .map(|(i, sv)| f[i + slow - fast] - sv)
        .collect();
    let sig = ema_series(&line, signal);
    let m = *line.last()?;
    let sg = *sig.last()?;
    Some((m, sg, m - sg))
}

fn rsi_word(v: f64) -> &'static str {
    if v >= 70.0 {
        "overbought"
    } else if v <= 30.0 {
        "oversold"
    } else {
        "neutral"
    }
}

impl Provider for Indicators {
    fn describe() -> Info {
        Info::new("technical indicators (SMA, EMA, RSI, MACD) over a stored price series")
            .lists()
            .writes()
            .removes()
            .suffix(Suffix::file("sma", "simple moving average").query(&["period"]))
            .suffix(Suffix::file("ema", "exponential moving average").query(&["period"]))
            .suffix(Suffix::file("rsi", "Wilder's relative strength index").query(&["period"]))
            .suffix(
                Suffix::file("macd", "MACD line, signal and histogram")
                    .query(&["fast", "slow", "signal"]),
            )
            .suffix(Suffix::file("prices", "the stored series, oldest first"))
    }

    fn read(req: Request) -> Result<String> {
        let sym = symbol(&req).ok_or_else(|| Error::is_a_directory(&req.path))?;
        let p = load(sym)?;
        let last = p[p.len() - 1];
        match req.suffix.as_deref() {
            Some("prices") => Ok(p
                .iter()
                .map(|v| format!("{v}"))
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"),
            Some("sma") => {
                let n: usize = req.query_num("period", 20)?;
                need("SMA", p.len(), n.max(1), sym)?;
                Ok(format!("{:.4}\n", sma(&p, n).unwrap_or(last)))
            }
            Some("ema") => {
                let n: usize = req.query_num("period", 12)?;
                need("EMA", p.len(), n.max(1), sym)?;
                Ok(format!(
                    "{:.4}\n",
                    ema_series(&p, n).last().copied().unwrap_or(last)
                ))
            }
            Some("rsi") => {
                let n: usize = req.query_num("period", 14)?;
                need("RSI", p.len(), n + 1, sym)?;
                let v = rsi(&p, n).unwrap_or(50.0);
                Ok(format!("{v:.2} {}\n", rsi_word(v)))
            }
            Some("macd") => {
                let fast: usize = req.query_num("fast", 12)?;
                let slow: usize = req.query_num("slow", 26)?;
                let signal: usize = req.query_num("signal", 9)?;
                if fast == 0 || fast >= slow || signal == 0 {
                    return Err(Error::invalid("MACD needs 0 < fast < slow and signal > 0"));
                }
                need("MACD", p.len(), slow + signal - 1, sym)?;
                let (m, s, h) = macd(&p, fast, slow, signal).unwrap_or((0.0, 0.0, 0.0));
                Ok(format!("macd {m:.4}\nsignal {s:.4}\nhistogram {h:.4}\n"))
            }
            Some(other) => Err(Error::unsupported(format!("no suffix :{other}"))),
            None => {
                let mut out = format!("# {sym}\n\nprices: {} (last {last})\n", p.len());
                if let Some(v) = sma(&p, 20) {
                    out.push_str(&format!("SMA(20): {v:.4}\n"));
                }
                if let Some(v) = ema_series(&p, 12).last() {
                    out.push_str(&format!("EMA(12): {v:.4}\n"));
                }
                if let Some(v) = rsi(&p, 14) {
                    out.push_str(&format!("RSI(14): {v:.2} {}\n", rsi_word(v)));
                }
                if let Some((m, s, h)) = macd(&p, 12, 26, 9) {
                    out.push_str(&format!(
                        "MACD(12,26,9): {m:.4} signal {s:.4} histogram {h:.4}\n"
                    ));
                }
                Ok(out)
            }
        }
    }

    fn list(_req: Request) -> Result<Vec<Entry>> {
        Ok(kv::keys("prices/")
            .into_iter()
            .filter_map(|k| k.strip_prefix("prices/").map(str::to_string))
            .map(|s| Entry::file(s, 0))
            .collect())
    }

    fn write(req: Request, content: String) -> Result<String> {
        let sym = symbol(&req).ok_or_else(|| Error::is_a_directory(&req.path))?;
        if req.suffix.is_some() {
            return Err(Error::new(
                avm_plugin::ErrorKind::ReadOnly,
                "indicators are computed; write prices to the symbol itself",
            ));
        }
        let p = parse_prices(&content)?;
        let text: Vec<String> = p.iter().map(|v| v.to_string()).collect();
        kv::set(&key(sym), &text.join(","))?;
        Ok(format!("stored {} prices for {sym}\n", p.len()))
    }

    fn remove(req: Request) -> Result<()> {
        let sym = symbol(&req).ok_or_else(|| Error::is_a_directory(&req.path))?;
        if kv::delete(&key(sym))? {
            Ok(())
        } else {
            Err(Error::not_found(format!("no prices for {sym}")))
        }
    }
}

export!(Indicators);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicators_match_hand_computed_values() {
        let p: Vec<f64> = (1..=30).map(|i| i as f64).collect();
        assert_eq!(sma(&p, 5), Some(28.0));
        // A strictly rising series has no losses.
        assert_eq!(rsi(&p, 14), Some(100.0));
        let e = ema_series(&[1.0, 2.0, 3.0, 4.0], 2);
        assert_eq!(e.len(), 3);
        assert!((e[0] - 1.5).abs() < 1e-12);
        assert!((e[1] - (2.0 / 3.0 * 3.0 + 1.0 / 3.0 * 1.5)).abs() < 1e-12);
        let (m, s, _) = macd(&p, 12, 26, 3).expect("enough data");
        // A linear series settles at a constant MACD: slope × (slow − fast) / 2.
        assert!((m - 7.0).abs() < 0.6 && (s - 7.0).abs() < 0.6, "{m} {s}");
    }
}
