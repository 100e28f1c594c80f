//! Cursor pagination (CONTRACT §7): `?limit=&after=` → `{object: "list", data, has_more, next_cursor}`.

use serde::Serialize;
use sluice_store::Page;
use sluice_types::validation::Errors;
use sluice_types::ApiError;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Validates the raw query values into a page that asks the store for one extra row, which
/// tells whether there is a next page without a second query.
pub fn page(limit: Option<&str>, after: Option<&str>) -> Result<(Page, u32), ApiError> {
    let mut errors = Errors::new();
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Ok(0) => {
                errors.add("limit", "min_value", "limit must be at least 1");
                DEFAULT_LIMIT
            }
            Ok(_) => {
                errors.add(
                    "limit",
                    "max_value",
                    format!("limit must be at most {MAX_LIMIT}"),
                );
                DEFAULT_LIMIT
            }
            Err(_) => {
                errors.add("limit", "invalid_type", "limit must be a whole number");
                DEFAULT_LIMIT
            }
        },
    };
    errors.finish()?;
    let page = Page {
        after: after.filter(|a| !a.is_empty()).map(str::to_owned),
        limit: limit + 1,
    };
    Ok((page, limit))
}

/// One page of results in the list envelope.
#[derive(Serialize, Debug)]
pub struct List<T: Serialize> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

/// Trims the extra row fetched by `page` and fills in the cursor from the last item's id.
pub fn finish<T: Serialize>(mut rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> &str) -> List<T> {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|r| id_of(r).to_owned())
    } else {
        None
    };
    List {
        object: "list",
        data: rows,
        has_more,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limits_are_field_errors() {
        for (raw, code) in [
            ("0", "min_value"),
            ("101", "max_value"),
            ("ten", "invalid_type"),
        ] {
            let e = page(Some(raw), None).unwrap_err();
            let d = e.details.unwrap();
            assert_eq!(d["errors"][0]["code"], code, "{raw}");
            assert_eq!(e.param.as_deref(), Some("limit"));
        }
    }

    #[test]
    fn the_extra_row_becomes_has_more() {
        let (p, limit) = page(Some("2"), None).unwrap();
        assert_eq!(p.limit, 3);
        let l = finish(vec!["a", "b", "c"], limit, |s| s);
        assert!(l.has_more);
        assert_eq!(l.data, vec!["a", "b"]);
        assert_eq!(l.next_cursor.as_deref(), Some("b"));
        let l = finish(vec!["a"], limit, |s| s);
        assert!(!l.has_more);
        assert_eq!(l.next_cursor, None);
    }
}
