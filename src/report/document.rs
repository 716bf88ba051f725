//! A report as a list of blocks, rendered two ways from the same blocks:
//! Markdown (`report.md`, charts linked) and a self-contained HTML page
//! (`report.html`, charts inline as base64 PNG), so the two never disagree.
//! The HTML adds what a reader of a long page in a browser needs: the verdict
//! boxed at the top, a table of contents linking every section heading, tables
//! that scroll inside the page width and charts that shrink with the window
//! (`just report-check` looks at the pages in headless Chromium).

use base64::Engine;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Block {
    Heading(usize, String),
    Para(String),
    /// Bullet points.
    List(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A PNG under the report's folder (relative path) with its caption.
    Image {
        path: PathBuf,
        caption: String,
    },
    Code(String),
    /// The verdict on the exercise: its blocks, boxed in the HTML (the
    /// contents' first entry, anchor [`VERDICT_ID`]); Markdown prints them
    /// as they are.
    Verdict(Vec<Block>),
    /// Where the HTML's table of contents goes (every section and subsection
    /// heading, linked). Markdown has none: its readers' viewers outline it.
    Toc,
}

/// The verdict's anchor in the HTML (`report.html#verdict`).
pub const VERDICT_ID: &str = "verdict";

/// Markdown; images are linked by their relative path.
pub fn markdown(blocks: &[Block]) -> String {
    let mut s = String::new();
    let cell = |c: &str| c.replace('|', "\\|").replace('\n', " ");
    for b in blocks {
        match b {
            Block::Heading(l, t) => s += &format!("{} {t}\n\n", "#".repeat(*l)),
            Block::Para(t) => s += &format!("{t}\n\n"),
            Block::List(items) => {
                for i in items {
                    s += &format!("- {i}\n");
                }
                s += "\n";
            }
            Block::Table { header, rows } => {
                s += &format!(
                    "| {} |\n|{}|\n",
                    header
                        .iter()
                        .map(|h| cell(h))
                        .collect::<Vec<_>>()
                        .join(" | "),
                    header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
                );
                for r in rows {
                    s += &format!(
                        "| {} |\n",
                        r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                    );
                }
                s += "\n";
            }
            Block::Image { path, caption } => {
                s += &format!("![{caption}]({})\n\n*{caption}*\n\n", path.display())
            }
            Block::Code(t) => s += &format!("```toml\n{}\n```\n\n", t.trim_end()),
            Block::Verdict(inner) => s += &markdown(inner),
            Block::Toc => {}
        }
    }
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline `**bold**` and `` `code` `` of our own paragraphs, after escaping.
fn inline(t: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let mut code = false;
    let e = esc(t);
    let mut chars = e.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' && chars.peek() == Some(&'*') && !code {
            chars.next();
            out += if bold { "</strong>" } else { "<strong>" };
            bold = !bold;
        } else if c == '`' {
            out += if code { "</code>" } else { "<code>" };
            code = !code;
        } else {
            out.push(c);
        }
    }
    out
}

const STYLE: &str = "body{font-family:-apple-system,Segoe UI,DejaVu Sans,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.5;overflow-wrap:break-word}\
.table-wrap{max-width:100%;overflow-x:auto;margin:1em 0}table{border-collapse:collapse;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}\
th{background:#f3f3f3}tr:nth-child(even){background:#fafafa}img{max-width:100%;height:auto;border:1px solid #eee}\
figure{margin:1.5em 0}figcaption{color:#555;font-size:0.9em}pre{background:#f6f6f6;padding:0.8em;overflow-x:auto}\
code{background:#f3f3f3;padding:0 3px}h1,h2,h3{border-bottom:1px solid #eee;padding-bottom:0.2em}\
.verdict{border-left:4px solid #3465a4;background:#f4f7fc;padding:0.1em 1em;margin:1em 0}\
.toc{border:1px solid #eee;background:#fafafa;padding:0.5em 1em;margin:1em 0}.toc ul{margin:0.2em 0;padding-left:1.4em}";

/// One heading of the page: its level, text and unique anchor.
struct Anchor {
    level: usize,
    text: String,
    id: String,
}

/// A heading's anchor: its words lowercased and joined by `-`
/// ("Bits/dim" -> `bits-dim`); `section` when it has none.
fn slug(text: &str) -> String {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        "section".into()
    } else {
        words.join("-")
    }
}

/// Every heading of `blocks` (the verdict's included), in page order, each
/// with an anchor no other heading (nor the verdict) has: a repeated title
/// gets `-2`, `-3`, ….
fn anchors(blocks: &[Block]) -> Vec<Anchor> {
    fn walk(blocks: &[Block], taken: &mut HashSet<String>, out: &mut Vec<Anchor>) {
        for b in blocks {
            match b {
                Block::Heading(level, text) => {
                    let base = slug(text);
                    let mut id = base.clone();
                    let mut k = 2;
                    while !taken.insert(id.clone()) {
                        id = format!("{base}-{k}");
                        k += 1;
                    }
                    out.push(Anchor {
                        level: *level,
                        text: text.clone(),
                        id,
                    });
                }
                Block::Verdict(inner) => walk(inner, taken, out),
                _ => {}
            }
        }
    }
    let mut taken = HashSet::from([VERDICT_ID.to_string()]);
    let mut out = vec![];
    walk(blocks, &mut taken, &mut out);
    out
}

/// The table of contents: the verdict first (when the page has one), then
/// each section (`h2`) with its subsections (`h3`) nested under it.
fn toc(anchors: &[Anchor], verdict: bool) -> String {
    let mut items = String::new();
    if verdict {
        items += &format!("<li><a href=\"#{VERDICT_ID}\">Verdict</a></li>\n");
    }
    let (mut in_section, mut in_sub) = (false, false);
    for a in anchors.iter().filter(|a| a.level == 2 || a.level == 3) {
        let link = format!("<a href=\"#{}\">{}</a>", a.id, inline(&a.text));
        if a.level == 3 && in_section {
            if !in_sub {
                items += "<ul>";
                in_sub = true;
            }
            items += &format!("<li>{link}</li>");
            continue;
        }
        if in_sub {
            items += "</ul>";
            in_sub = false;
        }
        if in_section {
            items += "</li>\n";
        }
        items += &format!("<li>{link}");
        in_section = true;
    }
    if in_sub {
        items += "</ul>";
    }
    if in_section {
        items += "</li>\n";
    }
    if items.is_empty() {
        return String::new();
    }
    format!("<nav class=\"toc\" aria-label=\"Contents\"><strong>Contents</strong>\n<ul>\n{items}</ul></nav>\n")
}

/// Renders blocks as HTML, handing each heading its anchor in page order.
struct Html<'a> {
    base: &'a Path,
    anchors: Vec<Anchor>,
    next_anchor: usize,
    has_verdict: bool,
}

impl Html<'_> {
    fn blocks(&mut self, blocks: &[Block], s: &mut String) {
        for b in blocks {
            self.block(b, s);
        }
    }

    fn block(&mut self, b: &Block, s: &mut String) {
        match b {
            Block::Heading(l, t) => {
                let id = self
                    .anchors
                    .get(self.next_anchor)
                    .map_or_else(|| slug(t), |a| a.id.clone());
                self.next_anchor += 1;
                *s += &format!("<h{l} id=\"{}\">{}</h{l}>\n", esc(&id), inline(t));
            }
            Block::Para(t) => *s += &format!("<p>{}</p>\n", inline(t)),
            Block::List(items) => {
                *s += "<ul>\n";
                for i in items {
                    *s += &format!("<li>{}</li>\n", inline(i));
                }
                *s += "</ul>\n";
            }
            Block::Table { header, rows } => *s += &table(header, rows),
            Block::Image { path, caption } => {
                let src = match std::fs::read(self.base.join(path)) {
                    Ok(bytes) => format!(
                        "data:image/png;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    ),
                    Err(_) => esc(&path.display().to_string()),
                };
                *s += &format!(
                    "<figure><img src=\"{src}\" alt=\"{0}\"><figcaption>{0}</figcaption></figure>\n",
                    esc(caption)
                );
            }
            Block::Code(t) => *s += &format!("<pre><code>{}</code></pre>\n", esc(t)),
            Block::Verdict(inner) => {
                *s += &format!("<section id=\"{VERDICT_ID}\" class=\"verdict\">\n");
                self.blocks(inner, s);
                *s += "</section>\n";
            }
            Block::Toc => *s += &toc(&self.anchors, self.has_verdict),
        }
    }
}

/// A table inside a box that scrolls sideways when the table is wider than
/// the page, so that a wide table never widens the page itself.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<div class=\"table-wrap\"><table><thead><tr>");
    for h in header {
        s += &format!("<th>{}</th>", inline(h));
    }
    s += "</tr></thead><tbody>\n";
    for r in rows {
        s += "<tr>";
        for c in r {
            s += &format!("<td>{}</td>", inline(c));
        }
        s += "</tr>\n";
    }
    s += "</tbody></table></div>\n";
    s
}

/// A self-contained HTML page; images under `base` are embedded.
pub fn html(title: &str, blocks: &[Block], base: &Path) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(title)
    );
    let mut r = Html {
        base,
        anchors: anchors(blocks),
        next_anchor: 0,
        has_verdict: blocks.iter().any(|b| matches!(b, Block::Verdict(_))),
    };
    r.blocks(blocks, &mut s);
    s += "</body></html>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_html_carry_the_same_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.png"), [137u8, 80, 78, 71]).unwrap();
        let blocks = vec![
            Block::Heading(1, "Report".into()),
            Block::Para("EMA **lowers** `fd` <a bit>".into()),
            Block::Table {
                header: vec!["variant".into(), "mean".into()],
                rows: vec![vec!["a|b".into(), "1.0".into()]],
            },
            Block::Image {
                path: "c.png".into(),
                caption: "loss".into(),
            },
        ];
        let md = markdown(&blocks);
        assert!(md.contains("# Report\n"));
        assert!(md.contains("| a\\|b | 1.0 |"));
        assert!(md.contains("![loss](c.png)"));
        let h = html("R", &blocks, dir.path());
        assert!(h.contains("<strong>lowers</strong> <code>fd</code> &lt;a bit&gt;"));
        assert!(
            h.contains("data:image/png;base64,iVBORw=="),
            "the PNG inline"
        );
        assert!(h.contains("<td>a|b</td>"));
    }

    /// The opening of a report: title, verdict, contents, then sections
    /// (one title twice, one subsection).
    fn long_report() -> Vec<Block> {
        vec![
            Block::Heading(1, "Report: ema".into()),
            Block::Verdict(vec![
                Block::Para("**Question:** does EMA help?".into()),
                Block::Para("**Verdict: confirmed**".into()),
            ]),
            Block::Para("A sweep.".into()),
            Block::Toc,
            Block::Heading(2, "What was run".into()),
            Block::Heading(3, "Runs that did not complete".into()),
            Block::Heading(2, "Results".into()),
            Block::Heading(3, "Bits/dim".into()),
            Block::Heading(2, "Charts".into()),
            Block::Heading(2, "Charts".into()),
            Block::Heading(2, "Verdict".into()),
        ]
    }

    /// `<hN id="…">` of every heading of a page, in order.
    fn heading_ids(h: &str, level: usize) -> Vec<String> {
        let open = format!("<h{level} id=\"");
        h.match_indices(&open)
            .map(|(i, _)| {
                let rest = &h[i + open.len()..];
                rest[..rest.find('"').unwrap()].to_string()
            })
            .collect()
    }

    #[test]
    fn every_section_heading_has_an_anchor_and_a_contents_link() {
        let h = html("R", &long_report(), Path::new("."));
        let (h2, h3) = (heading_ids(&h, 2), heading_ids(&h, 3));
        assert_eq!(h2.len(), 5, "every h2 has an id: {h}");
        assert_eq!(h3.len(), 2, "every h3 has an id: {h}");
        assert_eq!(h.matches("<h2").count(), 5);
        let mut all: Vec<&String> = h2.iter().chain(&h3).collect();
        all.push(&h2[0]);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 7, "unique: {h2:?} {h3:?}");
        assert_eq!(
            h2,
            ["what-was-run", "results", "charts", "charts-2", "verdict-2"]
        );
        assert_eq!(h3, ["runs-that-did-not-complete", "bits-dim"]);
        let nav = &h[h.find("<nav").unwrap()..h.find("</nav>").unwrap()];
        for id in h2.iter().chain(&h3) {
            assert_eq!(
                nav.matches(&format!("href=\"#{id}\"")).count(),
                1,
                "{id}: {nav}"
            );
        }
        // Subsections nested under their section, the verdict first.
        assert!(nav.contains(
            "<li><a href=\"#what-was-run\">What was run</a><ul><li><a href=\"#runs-that-did-not-complete\">"
        ), "{nav}");
        assert!(nav.find("#verdict\"").unwrap() < nav.find("#what-was-run").unwrap());
    }

    #[test]
    fn the_verdict_is_boxed_at_the_top_before_the_contents() {
        let h = html("R", &long_report(), Path::new("."));
        let title = h.find("<h1").unwrap();
        let verdict = h
            .find("<section id=\"verdict\" class=\"verdict\">")
            .unwrap();
        let nav = h.find("<nav").unwrap();
        let first_section = h.find("<h2").unwrap();
        assert!(
            title < verdict && verdict < nav && nav < first_section,
            "{h}"
        );
        assert!(h[verdict..nav].contains("<strong>Verdict: confirmed</strong>"));
        // Markdown: the same blocks in the same order, no box, no contents.
        let md = markdown(&long_report());
        assert!(md.starts_with(
            "# Report: ema\n\n**Question:** does EMA help?\n\n**Verdict: confirmed**\n\nA sweep.\n\n## What was run\n"
        ), "{md}");
    }

    #[test]
    fn a_page_without_sections_or_verdict_has_no_contents() {
        let blocks = vec![
            Block::Heading(1, "R".into()),
            Block::Toc,
            Block::Para("x".into()),
        ];
        let h = html("R", &blocks, Path::new("."));
        assert!(!h.contains("<nav"), "{h}");
        assert!(!h.contains("<section"), "{h}");
    }

    #[test]
    fn tables_scroll_in_their_box_and_images_scale_down_with_the_window() {
        let blocks = vec![Block::Table {
            header: vec!["a".into()],
            rows: vec![vec!["1".into()]],
        }];
        let h = html("R", &blocks, Path::new("."));
        assert!(
            h.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        );
        assert!(h.contains("<div class=\"table-wrap\"><table>"), "{h}");
        assert!(h.contains("</table></div>"), "{h}");
        assert!(h.contains(".table-wrap{max-width:100%;overflow-x:auto"));
        assert!(h.contains("img{max-width:100%;height:auto"));
    }

    #[test]
    fn anchors_are_the_words_of_the_heading() {
        assert_eq!(slug("Bits/dim"), "bits-dim");
        assert_eq!(slug("  The spec  "), "the-spec");
        assert_eq!(slug("σ_rel (post hoc)"), "σ-rel-post-hoc");
        assert_eq!(slug("**`fd`**"), "fd");
        assert_eq!(slug("—"), "section");
    }
}
