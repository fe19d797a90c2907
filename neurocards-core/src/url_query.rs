//! Adding query parameters to a URL we were given as text (the callback URL, which may carry a
//! query already).

/// `url` with `pairs` appended to its query, form-encoded, after `?` or `&` as needed.
pub(crate) fn append_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_an_existing_query_or_start_one() {
        assert_eq!(append_query("https://b/cb/s", &[("job", "7")]), "https://b/cb/s?job=7");
        assert_eq!(
            append_query("https://b/cb/s?job=7", &[("key", "k 1"), ("model", "m")]),
            "https://b/cb/s?job=7&key=k+1&model=m"
        );
    }
}
