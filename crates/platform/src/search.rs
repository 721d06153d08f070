//! Substring search (`?q=`) in SQL: `column LIKE pattern` with the search text's own wildcards escaped, so
//! the text is matched literally and a trigram (`pg_trgm`) GIN index on the column can serve the search,
//! which `strpos` or `position` cannot use. docs/indexing.md lists the indexes.

/// The `LIKE` pattern (default escape character `\`) matching any text that contains `text`.
pub fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn wildcards_in_the_search_text_are_matched_literally() {
        assert_eq!(contains_pattern("ab"), "%ab%");
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
