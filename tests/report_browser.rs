//! The HTML report in a real browser: a smoke sweep (exercise 2's, with its
//! verdict, charts and sample grids) is run, and its report.html opened in
//! headless Chromium by `scripts/report_check.py` (what `just report-check`
//! runs on the committed examples): every `<img>` loaded, no console errors,
//! every contents link lands, and the page fits a 1280 px and a 500 px
//! window. A copy of the report broken on purpose must fail the same check,
//! each fault named, so that a passing check means something.
//!
//! Without Chromium the test says so and passes, unless
//! `DDPMLAB_REQUIRE_CHROMIUM=1` (CI sets it after installing Chromium).

mod common;
use common::{bin, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The browser the check would use: `$CHROMIUM`, else `chromium` or
/// `chromium-browser` on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(c));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// `scripts/report_check.py` on `pages`, with `args` first.
fn report_check(browser: &Path, args: &[&str], pages: &[&Path]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/report_check.py");
    Command::new("python3")
        .arg(script)
        .arg("--chromium")
        .arg(browser)
        .args(args)
        .args(pages)
        .output()
        .expect("python3 on PATH")
}

/// Run experiments/smoke/ex2_ema.toml into `results`; its sweep folder.
fn smoke_sweep(results: &Path) -> PathBuf {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/smoke/ex2_ema.toml");
    let o = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--results")
        .arg(results)
        .args(["--quiet", "--cpu-jobs", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let root = results.join("smoke-ex2-ema");
    assert!(root.join("report.html").is_file(), "{}", text(&o.stderr));
    root
}

#[test]
fn the_smoke_sweeps_report_loads_every_chart_without_errors_in_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("DDPMLAB_REQUIRE_CHROMIUM").is_none(),
            "DDPMLAB_REQUIRE_CHROMIUM is set but no chromium is on PATH (apt-get install chromium)"
        );
        eprintln!(
            "SKIPPED report_browser: no chromium on PATH (or $CHROMIUM); \
             `apt-get install chromium` to check report.html in a browser"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = smoke_sweep(&tmp.path().join("results"));
    let report = root.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    let images = html.matches("<img ").count();
    assert!(images >= 3, "charts and sample grids: {images}");
    assert!(html.contains("<section id=\"verdict\""), "the verdict box");
    let nav = &html[html.find("<nav class=\"toc\"").expect("the contents")..];
    let contents = nav[..nav.find("</nav>").unwrap()]
        .matches("<a href=\"#")
        .count();
    assert_eq!(html.matches("<h2").count(), html.matches("<h2 id=").count());
    assert_eq!(
        contents,
        html.matches("<h2 id=").count() + html.matches("<h3 id=").count() + 1,
        "a link to the verdict and to each section: {nav}"
    );

    // The report as the sweep wrote it: passes, rendered at both widths.
    let pngs = tmp.path().join("png");
    let o = report_check(&browser, &["--out", pngs.to_str().unwrap()], &[&report]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(
        out.contains(&format!("{images} images, {contents} contents links")),
        "{out}"
    );
    assert!(out.contains("windows 1280, 500 px wide"), "{out}");
    for width in [1280, 500] {
        let png = std::fs::read(pngs.join(format!("smoke-ex2-ema-{width}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{width} px render is a PNG");
    }

    // A copy with a chart that cannot load, a console error, a script that
    // throws, a block wider than a narrow window and a dead link: each named.
    let broken = root.join("broken.html");
    let faults =
        "<figure><img src=\"no-such-chart.png\" alt=\"a chart that is not there\"></figure>\
                  <script>console.error('deliberate console error');</script>\
                  <script>noSuchFunction();</script>\
                  <div id=\"too-wide\" style=\"width:900px\">x</div>\
                  <a href=\"#nowhere\">a link to nothing</a></body>";
    std::fs::write(&broken, html.replace("</body>", faults)).unwrap();
    let o = report_check(&browser, &[], &[&broken]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}{}", text(&o.stderr));
    for wanted in [
        "FAIL ",
        &format!(
            "image {0} of {0} (src no-such-chart.png, alt \"a chart that is not there\") did not load",
            images + 1
        ),
        "console.error: deliberate console error",
        "uncaught error: Uncaught ReferenceError: noSuchFunction is not defined",
        "at 500 px: the page is",
        "div#too-wide \"x\" reaches",
        "in-page link #nowhere points at no element",
        "0 of 1 pages passed",
    ] {
        assert!(out.contains(wanted), "wanted {wanted:?} in:\n{out}");
    }
    assert!(
        !out.contains("at 1280 px: the page is"),
        "900 px fits 1280: {out}"
    );
}
