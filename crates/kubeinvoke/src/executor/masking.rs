//! Secret parameter values masked in a command's output: replaced by `***` before the output
//! reaches its log, its live-output file or a reader. Output arrives in chunks, so a value split
//! across two writes is caught too: the tail of a chunk that could still begin a secret is held
//! back until the next chunk (or the end) decides.

/// What a masked value is replaced by.
pub(crate) const MASK: &[u8] = b"***";

pub(crate) struct SecretMask {
    /// Longest first, so a value that contains another is masked whole.
    secrets: Vec<Vec<u8>>,
    /// Bytes that may be the start of a secret, not emitted yet.
    held: Vec<u8>,
    /// Which bytes begin some secret: every other byte is emitted without a look at the secrets.
    starts: [bool; 256],
}

impl SecretMask {
    /// A mask for these values (empty ones are ignored: there is nothing to hide).
    pub(crate) fn new(values: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut secrets: Vec<Vec<u8>> =
            values.into_iter().filter(|v| !v.as_ref().is_empty()).map(|v| v.as_ref().as_bytes().to_vec()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let mut starts = [false; 256];
        for secret in &secrets {
            starts[usize::from(secret[0])] = true;
        }
        SecretMask { secrets, held: Vec::new(), starts }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The masked bytes of `chunk` that are final; a possible start of a secret is held back.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        let mut input = std::mem::take(&mut self.held);
        input.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(input.len());
        let mut at = 0;
        while at < input.len() {
            if !self.starts[usize::from(input[at])] {
                out.push(input[at]);
                at += 1;
                continue;
            }
            let rest = &input[at..];
            if let Some(secret) = self.secrets.iter().find(|s| rest.starts_with(s)) {
                out.extend_from_slice(MASK);
                at += secret.len();
            } else if self.secrets.iter().any(|s| s.len() > rest.len() && s.starts_with(rest)) {
                // The rest may be the start of a secret: the next chunk decides.
                self.held = rest.to_vec();
                return out;
            } else {
                out.push(input[at]);
                at += 1;
            }
        }
        out
    }

    /// How many bytes are held back (a possible start of a secret).
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Forgets the held-back bytes: the caller feeds them again (from a complete copy).
    pub(crate) fn discard_held(&mut self) {
        self.held.clear();
    }

    /// The bytes held back at the end of the output (not a whole secret, so shown as they are).
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// Masks a whole text at once.
    pub(crate) fn mask_all(&mut self, text: &[u8]) -> Vec<u8> {
        let mut out = self.push(text);
        out.extend(self.finish());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(mask: &mut SecretMask, chunks: &[&str]) -> String {
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(mask.push(chunk.as_bytes()));
        }
        out.extend(mask.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_masked_whole_even_split_across_writes() {
        let mut mask = SecretMask::new(["hunter2", "s3cr3t-token"]);
        assert_eq!(through(&mut mask, &["password=hunter2\n"]), "password=***\n");
        assert_eq!(through(&mut mask, &["pass=hun", "ter2 and s3", "cr3t-", "token!"]), "pass=*** and ***!");
        assert_eq!(through(&mut mask, &["h", "u", "n", "t", "e", "r", "2"]), "***");
        // A start that turns out not to be a secret is shown as it was.
        assert_eq!(through(&mut mask, &["hunt", "ing season"]), "hunting season");
        assert_eq!(through(&mut mask, &["ends with hunt"]), "ends with hunt");
    }

    #[test]
    fn the_longest_value_wins_and_no_values_change_nothing() {
        let mut mask = SecretMask::new(["abc", "abcdef", ""]);
        assert_eq!(through(&mut mask, &["xabcdefx abcx"]), "x***x ***x");
        let mut none = SecretMask::new([""]);
        assert!(none.is_empty());
        assert_eq!(through(&mut none, &["anything"]), "anything");
    }
}
