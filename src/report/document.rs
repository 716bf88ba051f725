//! A report as a list of blocks, rendered two ways from the same blocks:
//! Markdown (`report.md`, charts linked) and a self-contained HTML page
//! (`report.html`, charts inline as base64 PNG), so the two never disagree.

use base64::Engine;
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
}

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

const STYLE: &str = "body{font-family:-apple-system,Segoe UI,DejaVu Sans,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.5}\
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}\
th{background:#f3f3f3}tr:nth-child(even){background:#fafafa}img{max-width:100%;border:1px solid #eee}\
figure{margin:1.5em 0}figcaption{color:#555;font-size:0.9em}pre{background:#f6f6f6;padding:0.8em;overflow-x:auto}\
code{background:#f3f3f3;padding:0 3px}h1,h2,h3{border-bottom:1px solid #eee;padding-bottom:0.2em}";

/// A self-contained HTML page; images under `base` are embedded.
pub fn html(title: &str, blocks: &[Block], base: &Path) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(title)
    );
    for b in blocks {
        match b {
            Block::Heading(l, t) => s += &format!("<h{l}>{}</h{l}>\n", inline(t)),
            Block::Para(t) => s += &format!("<p>{}</p>\n", inline(t)),
            Block::List(items) => {
                s += "<ul>\n";
                for i in items {
                    s += &format!("<li>{}</li>\n", inline(i));
                }
                s += "</ul>\n";
            }
            Block::Table { header, rows } => {
                s += "<table><thead><tr>";
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
                s += "</tbody></table>\n";
            }
            Block::Image { path, caption } => {
                let src = match std::fs::read(base.join(path)) {
                    Ok(bytes) => format!(
                        "data:image/png;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    ),
                    Err(_) => esc(&path.display().to_string()),
                };
                s += &format!(
                    "<figure><img src=\"{src}\" alt=\"{0}\"><figcaption>{0}</figcaption></figure>\n",
                    esc(caption)
                );
            }
            Block::Code(t) => s += &format!("<pre><code>{}</code></pre>\n", esc(t)),
        }
    }
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
}
