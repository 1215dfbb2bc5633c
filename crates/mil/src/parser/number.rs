//! Number text: decimal integers and floats, C99 hex floats.

use crate::value::Lit;

/// Parses a decimal integer, a decimal float or a C99 hex float (`0x1.8p-3`).
pub fn parse_number(s: &str) -> Option<Lit> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let sign = if neg { -1.0 } else { 1.0 };
    // One sign at most, and only in front (the integer and float parsers below take their own).
    if body.starts_with(['-', '+']) {
        return None;
    }
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        if !hex.contains(['p', 'P', '.']) {
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let v = i128::from_str_radix(hex, 16).ok()?;
            return Some(Lit::Int(if neg { -v } else { v }));
        }
        return parse_hex_float(hex).map(|v| Lit::Float(sign * v));
    }
    if body.bytes().all(|b| b.is_ascii_digit()) && !body.is_empty() {
        let v: i128 = body.parse().ok()?;
        return Some(Lit::Int(if neg { -v } else { v }));
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    body.parse::<f64>().ok().map(|v| Lit::Float(sign * v))
}

/// Hex-float digits after `0x`: `h[.h*]p[+-]d+` (the exponent is optional).
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.find(['p', 'P']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut m: u128 = 0;
    let mut shift: i32 = 0;
    for (k, c) in int_part.chars().chain(frac_part.chars()).enumerate() {
        let d = c.to_digit(16)? as u128;
        if m >> 120 != 0 {
            // Further digits cannot change an f64; count integer digits only.
            if k < int_part.len() {
                shift += 4;
            }
            continue;
        }
        m = m * 16 + d;
        if k >= int_part.len() {
            shift -= 4;
        }
    }
    Some(scale_pow2(m as f64, exp.checked_add(shift)?))
}

/// `x · 2^e` without intermediate overflow or underflow of the power.
fn scale_pow2(mut x: f64, mut e: i32) -> f64 {
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e)
}
