//! Slack's documented limits, enforced on whatever a template produced:
//! 50 blocks per message, 3,000 characters per text (150 in a header, 75
//! on a button, 2,000 per field), 10 fields per section, 10 context
//! elements, 25 buttons. A value over a limit is cut with an ellipsis;
//! Slack would otherwise refuse the whole message (`invalid_blocks`), and
//! an alert with a 100 KB annotation must still reach people.

use serde_json::Value;

use crate::templates::context::cut;

pub const MAX_BLOCKS: usize = 50;
pub const MAX_TEXT: usize = 3000;
const MAX_HEADER: usize = 150;
const MAX_BUTTON: usize = 75;
const MAX_FIELD: usize = 2000;
const MAX_FIELDS: usize = 10;
const MAX_CONTEXT: usize = 10;
const MAX_BUTTONS: usize = 25;

fn cut_text(object: &mut Value, max: usize) {
    if let Some(Value::String(s)) = object.get_mut("text") {
        if s.chars().nth(max).is_some() {
            *s = cut_between_entities(s, max);
        }
    }
}

/// [`cut`], but never inside an HTML entity: the texts are already
/// escaped for Slack (`&amp;`, `&lt;`, `&gt;`), and a cut `&lt` would show
/// as typed. Where the cut falls inside one, the whole entity goes.
fn cut_between_entities(s: &str, max: usize) -> String {
    let cut = cut(s, max);
    let Some(body) = cut.strip_suffix('…') else {
        return cut;
    };
    match body.rfind('&') {
        // An entity is `&` then at most 8 characters up to `;`.
        Some(amp) if !body[amp..].contains(';') && body.len() - amp <= 8 => {
            format!("{}…", &body[..amp])
        }
        _ => cut,
    }
}

fn truncate(list: Option<&mut Value>, max: usize) -> Vec<&mut Value> {
    match list {
        Some(Value::Array(items)) => {
            items.truncate(max);
            items.iter_mut().collect()
        }
        _ => Vec::new(),
    }
}

fn limit_block(block: &mut Value) {
    let kind = block
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(text) = block.get_mut("text") {
        cut_text(
            text,
            if kind == "header" {
                MAX_HEADER
            } else {
                MAX_TEXT
            },
        );
    }
    for field in truncate(block.get_mut("fields"), MAX_FIELDS) {
        cut_text(field, MAX_FIELD);
    }
    let max = if kind == "actions" {
        MAX_BUTTONS
    } else {
        MAX_CONTEXT
    };
    for element in truncate(block.get_mut("elements"), max) {
        if let Some(text) = element.get_mut("text") {
            cut_text(text, MAX_BUTTON);
        }
        cut_text(element, MAX_TEXT);
    }
}

/// Cuts a message (and its attachments) to Slack's limits.
pub fn enforce(message: &mut Value) {
    cut_text(message, MAX_TEXT);
    for block in truncate(message.get_mut("blocks"), MAX_BLOCKS) {
        limit_block(block);
    }
    if let Some(Value::Array(attachments)) = message.get_mut("attachments") {
        for a in attachments {
            cut_text(a, MAX_TEXT);
            for block in truncate(a.get_mut("blocks"), MAX_BLOCKS) {
                limit_block(block);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cut_never_splits_an_escape() {
        for run in ["&lt;", "&gt;", "&amp;", "a&amp;", "&lt;b", "&#x27;"] {
            for len in [MAX_TEXT - 3, MAX_TEXT, MAX_TEXT + 1, 10_000] {
                let mut m = json!({"text": run.repeat(len / run.len() + 1)});
                enforce(&mut m);
                let text = m["text"].as_str().unwrap();
                assert!(text.chars().count() <= MAX_TEXT);
                let body = text.strip_suffix('…').unwrap_or(text);
                let tail = &body[body.rfind('&').unwrap()..];
                assert!(tail.contains(';'), "{run}: cut inside an entity: …{tail}");
            }
        }
    }

    #[test]
    fn every_limit_is_enforced() {
        let long = "x".repeat(100_000);
        let blocks: Vec<Value> = (0..80)
            .map(|_| json!({"type": "section", "text": {"type": "plain_text", "text": long},
                "fields": (0..20).map(|_| json!({"type": "plain_text", "text": long})).collect::<Vec<_>>()}))
            .collect();
        let mut m = json!({"text": long, "attachments": [{"blocks": blocks}]});
        m["attachments"][0]["blocks"][0] =
            json!({"type": "header", "text": {"type": "plain_text", "text": long}});
        m["attachments"][0]["blocks"][1] = json!({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": long}, "url": "https://x"}]});
        enforce(&mut m);
        let count = |v: &Value| v.as_str().unwrap().chars().count();
        assert_eq!(count(&m["text"]), MAX_TEXT);
        let blocks = m["attachments"][0]["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), MAX_BLOCKS);
        assert_eq!(count(&blocks[0]["text"]["text"]), MAX_HEADER);
        assert_eq!(count(&blocks[1]["elements"][0]["text"]["text"]), MAX_BUTTON);
        assert_eq!(count(&blocks[2]["text"]["text"]), MAX_TEXT);
        assert!(blocks[2]["text"]["text"].as_str().unwrap().ends_with('…'));
        assert_eq!(blocks[2]["fields"].as_array().unwrap().len(), MAX_FIELDS);
        assert_eq!(count(&blocks[2]["fields"][0]["text"]), MAX_FIELD);
    }
}
