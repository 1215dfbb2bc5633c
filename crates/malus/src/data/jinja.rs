//! The Jinja environment Hugging Face chat templates are written for, on `minijinja`: blocks
//! trim their newline and leading whitespace (`trim_blocks`, `lstrip_blocks`), Python string and
//! dict methods (`.strip()`, `.startswith()`, `.items()`, … via minijinja-contrib), loop
//! controls, `raise_exception(msg)`, `strftime_now(fmt)`, a `tojson` that writes what Python's
//! `json.dumps` writes, and `{% generation %}` blocks (kept, as plain blocks).

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};

/// A new environment whose `strftime_now` reads the clock `now` (fixed, so that every
/// rendering of one preparation agrees).
pub fn environment(now: SystemTime) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    let secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    env.add_function("strftime_now", move |fmt: String| {
        strftime(secs, &fmt).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))
    });
    env
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (a transformers extension marking
/// assistant text) as `{% if true %}` / `{% endif %}`, keeping whitespace control.
pub fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let Some(end) = rest.find("%}") else {
            break;
        };
        let inner = &rest[2..end];
        let lead = inner.strip_prefix(['-', '+']).map_or("", |_| &inner[..1]);
        let body = &inner[lead.len()..];
        let trail = body
            .strip_suffix(['-', '+'])
            .map_or("", |_| &body[body.len() - 1..]);
        let word = body[..body.len() - trail.len()].trim();
        let new = match word {
            "generation" => "if true",
            "endgeneration" => "endif",
            _ => {
                out.push_str("{%");
                rest = &rest[2..];
                continue;
            }
        };
        out.push_str(&format!("{{%{lead} {new} {trail}%}}"));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `value | tojson(indent=…, separators=…, ensure_ascii=…, sort_keys=…)` as Python's
/// `json.dumps` writes it (keys are always in sorted order here).
fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let seps: Option<Vec<String>> = kwargs.get("separators")?;
    let _sorted: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let (item, key) = match seps.as_deref() {
        Some([i, k]) => (i.clone(), k.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ));
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    let style = Style {
        indent,
        item,
        key,
        ascii: ascii.unwrap_or(false),
    };
    write_json(&mut out, &json, &style, 0);
    Ok(out)
}

struct Style {
    indent: Option<usize>,
    item: String,
    key: String,
    ascii: bool,
}

fn write_json(out: &mut String, v: &serde_json::Value, s: &Style, depth: usize) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = s.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    match v {
        J::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(&s.item);
                }
                newline(out, depth + 1);
                write_json(out, x, s, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(&s.item);
                }
                newline(out, depth + 1);
                write_string(out, k, s.ascii);
                out.push_str(&s.key);
                write_json(out, x, s, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
        J::String(t) => write_string(out, t, s.ascii),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(out: &mut String, t: &str, ascii: bool) {
    let quoted = serde_json::Value::String(t.to_string()).to_string();
    if !ascii {
        out.push_str(&quoted);
        return;
    }
    for c in quoted.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The civil (proleptic Gregorian) date of a day count from 1970-01-01: (year, month 1-12, day).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (month <= 2) as i64, month, day)
}

/// Formats a UTC time (seconds since the epoch) with the common C `strftime` fields.
pub fn strftime(secs: i64, fmt: &str) -> Result<String, String> {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    let (hh, mm, ss) = (tod / 3600, tod / 60 % 60, tod % 60);
    let wd = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[m as usize - 1];
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('B') => out.push_str(month),
            Some('b') => out.push_str(&month[..3]),
            Some('A') => out.push_str(DAYS[wd]),
            Some('a') => out.push_str(&DAYS[wd][..3]),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hh + 11) % 12 + 1)),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('%') => out.push('%'),
            Some(x) => return Err(format!("strftime_now: %{x} is not supported")),
            None => return Err("strftime_now: the format ends in %".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::value::Serde;

    #[test]
    fn dates() {
        // 2024-07-26 00:00:00 UTC, a Friday (Unix time from `date -u -d 2024-07-26 +%s`).
        let t = 1_721_952_000;
        assert_eq!(strftime(t, "%d %b %Y").unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime(t + 13 * 3600 + 61, "%A %B %e, %y %I:%M:%S %p %%").unwrap(),
            "Friday July 26, 24 01:01:01 PM %"
        );
        assert_eq!(strftime(0, "%Y-%m-%d %a").unwrap(), "1970-01-01 Thu");
        assert_eq!(strftime(951_782_400, "%Y-%m-%d").unwrap(), "2000-02-29");
        assert!(strftime(0, "%Q").is_err());
    }

    #[test]
    fn python_json_and_helpers() {
        let env = environment(UNIX_EPOCH);
        let r = |src: &str, ctx: serde_json::Value| env.render_str(src, Value::from(Serde(&ctx)));
        let ctx = serde_json::json!({"x": {"b": [1, 2.5, "é<"], "a": null, "c": {}}});
        assert_eq!(
            r("{{ x | tojson }}", ctx.clone()).unwrap(),
            r#"{"a": null, "b": [1, 2.5, "é<"], "c": {}}"#
        );
        assert_eq!(
            r("{{ x.b | tojson(indent=2, ensure_ascii=true) }}", ctx.clone()).unwrap(),
            "[\n  1,\n  2.5,\n  \"\\u00e9<\"\n]"
        );
        assert_eq!(
            r("{{ x.b | tojson(separators=[',', ':']) }}", ctx).unwrap(),
            r#"[1,2.5,"é<"]"#
        );
        let e = r(
            "{{ raise_exception('roles must alternate') }}",
            serde_json::json!({}),
        );
        assert!(e.unwrap_err().to_string().contains("roles must alternate"));
        assert_eq!(
            r("{{ strftime_now('%d %b %Y') }}", serde_json::json!({})).unwrap(),
            "01 Jan 1970"
        );
        let src = "{{ ' a '.strip() }}{% for i in [1, 2, 3] %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% endfor %}\n{% if true %}\n  x\n{% endif %}";
        assert_eq!(r(src, serde_json::json!({})).unwrap(), "a13  x\n");
    }

    #[test]
    fn generation_tags() {
        assert_eq!(
            rewrite_generation_tags("a{%- generation -%}b{% endgeneration %}{% if x %}{%+endgeneration+%}"),
            "a{%- if true -%}b{% endif %}{% if x %}{%+ endif +%}"
        );
        assert_eq!(rewrite_generation_tags("{{ '{%' }} x %}"), "{{ '{%' }} x %}");
    }
}
