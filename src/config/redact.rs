//! Config errors as shown: they quote the values they refuse, which are blanked before an error reaches a
//! log line, an answer or the audit trail.

/// `text` with every quoted or backquoted span blanked (`"…"`, `` `…` ``): config errors quote the values
/// they refuse, and a secret pasted into the wrong field must not reach the log, the answer or the audit
/// trail (which cannot be edited). The field paths, outside quotes, stay.
pub fn redacted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        out.push('…');
        let mut escaped = false;
        for inner in chars.by_ref() {
            match inner {
                '\\' if c == '"' && !escaped => escaped = true,
                _ if inner == c && !escaped => {
                    out.push(c);
                    break;
                }
                _ => escaped = false,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn quoted_values_are_blanked_and_field_paths_kept() {
        let text = r#"config entry router_settings.num_retries: invalid type: string "x\"sk-1", expected u32"#;
        assert_eq!(
            redacted(text),
            r#"config entry router_settings.num_retries: invalid type: string "…", expected u32"#
        );
        assert_eq!(redacted("provider `sk-2` is not supported"), "provider `…` is not supported");
        assert!(!redacted("got the text \"sk-3\" and `sk-4").contains("sk-"));
    }
}
