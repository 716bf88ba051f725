//! How the report prints numbers: values to 3 significant figures and
//! interval half-widths to 2, so that a number never claims more precision
//! than its interval supports (the tables under `tables/` keep every digit).
//! Values below 10⁻³ or from 10⁵ up are written in scientific notation.

/// `v` to `digits` significant figures: `1268.336` → `1270`, `0.0495` →
/// `0.0495`, `2.5e-5` → `2.50e-5`; `—` when not finite.
pub fn sig(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "—".into()
        } else {
            format!("{v}")
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let digits = digits.max(1);
    // The exponent after rounding (9.996 to 3 figures is 10.0, not 9.100).
    let rounded: f64 = format!("{:.*e}", digits - 1, v).parse().unwrap_or(v);
    let exp = rounded.abs().log10().floor() as i32;
    if !(-3..5).contains(&exp) {
        return format!("{:.*e}", digits - 1, v);
    }
    let decimals = (digits as i32 - 1 - exp).max(0) as usize;
    format!("{rounded:.decimals$}")
}

/// A value: 3 significant figures.
pub fn num(v: f64) -> String {
    sig(v, 3)
}

/// An interval's half-width: 2 significant figures.
pub fn half(v: f64) -> String {
    sig(v, 2)
}

/// A relative change as a signed percentage, 3 significant figures: `-29.2%`.
pub fn pct(x: f64) -> String {
    let s = num(100.0 * x);
    if x >= 0.0 && x.is_finite() {
        format!("+{s}%")
    } else {
        format!("{s}%")
    }
}

/// An interval's half-width as a percentage, 2 significant figures: `41%`.
pub fn pct_half(x: f64) -> String {
    format!("{}%", half(100.0 * x))
}

/// A share as a percentage without sign, 3 significant figures: `80.0%`.
pub fn share(x: f64) -> String {
    format!("{}%", num(100.0 * x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_get_three_figures_and_intervals_two() {
        assert_eq!(num(1268.336), "1270");
        assert_eq!(num(0.0495), "0.0495");
        assert_eq!(num(12.0), "12.0");
        assert_eq!(num(-4.56789), "-4.57");
        assert_eq!(num(9.996), "10.0");
        assert_eq!(num(99960.0), "1.00e5");
        assert_eq!(num(12345678.0), "1.23e7");
        assert_eq!(num(0.000123456), "1.23e-4");
        assert_eq!(num(0.00123456), "0.00123");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "—");
        assert_eq!(half(6.409e-3), "0.0064");
        assert_eq!(half(3.2988), "3.3");
        assert_eq!(half(4.968275), "5.0");
        assert_eq!(half(12345.0), "12000");
        assert_eq!(half(123456.0), "1.2e5");
        assert_eq!(pct(-0.29166), "-29.2%");
        assert_eq!(pct(0.05), "+5.00%");
        assert_eq!(pct_half(0.4123), "41%");
        assert_eq!(share(0.8), "80.0%");
    }
}
