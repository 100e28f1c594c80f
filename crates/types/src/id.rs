//! Random identifiers: `req_…`, `acct_…`, `key_…` and the base62 alphabet they share.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of the random part of every id: 22 base62 characters carry ~131 bits.
pub const ID_RANDOM_LEN: usize = 22;

/// `n` characters drawn uniformly from the base62 alphabet using the OS CSPRNG.
///
/// Bytes of 248 and above are rejected so that `byte % 62` stays uniform.
pub fn random_base62(n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        fill_random(&mut buf);
        for &b in buf.iter() {
            if b < 248 && out.len() < n {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// Fills `buf` from the OS random source. A machine without one cannot run Sluice safely,
/// so the fallback aborts the process rather than hand out predictable secrets.
pub fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        std::process::abort();
    }
}

/// A fresh id with the given prefix, e.g. `new_id("acct")` → `acct_3xQk9Lr2bT7vWm4Zp8Yc1N`.
pub fn new_id(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 1 + ID_RANDOM_LEN);
    s.push_str(prefix);
    s.push('_');
    s.push_str(&random_base62(ID_RANDOM_LEN));
    s
}

/// True when `s` is `prefix_` followed by exactly the random part of an id.
pub fn is_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|r| r.len() == ID_RANDOM_LEN && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_have_the_contract_shape() {
        let id = new_id("req");
        assert_eq!(id.len(), 4 + 22);
        assert!(is_id("req", &id), "{id}");
        assert_ne!(id, new_id("req"));
    }

    #[test]
    fn is_id_rejects_wrong_prefix_length_and_alphabet() {
        assert!(!is_id("req", "key_3xQk9Lr2bT7vWm4Zp8Yc1N"));
        assert!(!is_id("req", "req_short"));
        assert!(!is_id("req", "req_3xQk9Lr2bT7vWm4Zp8Yc1-"));
    }
}
