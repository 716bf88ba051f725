//! Find where a dotted key is written in a TOML file, so errors can say
//! `run.toml:12: train.lr …`. Works for `[table]` headers, dotted keys
//! (`train.lr = 1`) and inline tables alike.

use toml_edit::{Document, TableLike};

/// The 1-based line of `dotted_key` in `text`, if it is written there. For a key
/// that is not there, the line of its nearest written parent.
pub fn line_of(text: &str, dotted_key: &str) -> Option<usize> {
    let doc = Document::parse(text.to_string()).ok()?;
    let parts: Vec<&str> = dotted_key.split('.').collect();
    let mut table: &dyn TableLike = doc.as_table();
    let mut found = None;
    let mut i = 0;
    'walk: while i < parts.len() {
        // A key may itself contain dots when quoted (`"train.lr" = [..]` in a
        // sweep): try the longest run of parts first.
        for j in (i + 1..=parts.len()).rev() {
            let key = parts[i..j].join(".");
            if let Some((k, item)) = table.get_key_value(&key) {
                found = k.span().or_else(|| item.span()).or(found);
                i = j;
                // `[[a.b]]` tables: `a.b.N` is the N-th one's header.
                if let Some(aot) = item.as_array_of_tables() {
                    if let Some(t) = parts
                        .get(i)
                        .and_then(|n| n.parse::<usize>().ok())
                        .and_then(|n| aot.get(n))
                    {
                        found = t.span().or(found);
                        i += 1;
                        table = t;
                        continue 'walk;
                    }
                    break 'walk;
                }
                match item.as_table_like() {
                    Some(t) => {
                        table = t;
                        continue 'walk;
                    }
                    None => break 'walk,
                }
            }
        }
        break;
    }
    found.map(|span| text[..span.start].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_every_toml_form() {
        let text = "# a run\n[train]\nlr = 0.1\nsteps = 5\n\n[model]\npreset = \"x\"\ndata.source = \"toy\"\newa = { decays = [0.9] }\n";
        assert_eq!(line_of(text, "train.lr"), Some(3));
        assert_eq!(line_of(text, "train.steps"), Some(4));
        assert_eq!(line_of(text, "model.preset"), Some(7));
        assert_eq!(line_of(text, "model.data.source"), Some(8));
        assert_eq!(line_of(text, "model.ewa.decays"), Some(9));
        assert_eq!(line_of(text, "train"), Some(2));
        assert_eq!(line_of(text, "nope.x"), None);
        assert_eq!(line_of(text, "train.nope"), Some(2));
        let sweep = "[sweep]\n\"train.lr\" = [1, 2]\nseeds = [0]\n";
        assert_eq!(line_of(sweep, "sweep.train.lr"), Some(2));
        assert_eq!(line_of(sweep, "sweep.seeds"), Some(3));
        assert_eq!(line_of(sweep, "sweep.ema.decay"), Some(1));
        let zips =
            "[sweep]\na = [1]\n[[sweep.zip]]\nb = [1]\n\n[[sweep.zip]]\nc = [1, 2]\nd = [3]\n";
        assert_eq!(line_of(zips, "sweep.zip.1"), Some(6));
        assert_eq!(line_of(zips, "sweep.zip.1.d"), Some(8));
        assert_eq!(line_of(zips, "sweep.zip.0.b"), Some(4));
    }
}
