//! Streaming decoded text: pieces are shown only once they are whole characters.

/// Emits the new suffix of a growing decoded text, holding back trailing U+FFFD (an unfinished
/// multi-byte character decoded lossily) until the next token completes it or the text ends.
#[derive(Default)]
pub(super) struct Stream {
    emitted: String,
}

impl Stream {
    fn next<'t>(&mut self, text: &'t str, last: bool) -> &'t str {
        if !text.starts_with(self.emitted.as_str()) {
            // The decoder rewrote text already shown; nothing consistent can be added.
            return "";
        }
        let end = if last {
            text.len()
        } else {
            text.trim_end_matches('\u{FFFD}').len()
        };
        if end <= self.emitted.len() {
            return "";
        }
        let piece = &text[self.emitted.len()..end];
        self.emitted.push_str(piece);
        piece
    }

    /// Hands what `text` (everything decoded so far) adds to `on_piece`, if anything.
    pub(super) fn emit(&mut self, text: &str, last: bool, on_piece: &mut impl FnMut(&str)) {
        let piece = self.next(text, last);
        if !piece.is_empty() {
            on_piece(piece);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_holds_back_split_characters() {
        let mut s = Stream::default();
        assert_eq!(s.next("a", false), "a");
        assert_eq!(s.next("a\u{FFFD}", false), "");
        assert_eq!(s.next("aé", false), "é");
        assert_eq!(s.next("aéb\u{FFFD}", true), "b\u{FFFD}");
    }
}
