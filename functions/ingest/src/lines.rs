//! An object's lines, read as a stream: each physical line with its number,
//! or why it cannot be a posting (over [`MAX_LINE_BYTES`], not UTF-8). A
//! long line is skipped by the codec, never held whole.

use bytes::BytesMut;
use shared::catalogue::MAX_LINE_BYTES;
use shared::ports::ObjectReader;
use tokio::io::AsyncReadExt;
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder};

#[derive(Debug, PartialEq)]
pub enum Line {
    Text(String),
    TooLong,
    NotUtf8(usize),
}

/// Why reading stopped before the object's end.
#[derive(Debug)]
pub enum ReadError {
    /// The bytes are broken (a truncated or corrupt gzip stream): the
    /// object cannot be read past here, however often it is tried.
    Corrupt(std::io::Error),
    /// The read failed (network): another try may pass.
    Transient(std::io::Error),
}

pub struct Lines {
    reader: ObjectReader,
    codec: AnyDelimiterCodec,
    buf: BytesMut,
    eof: bool,
    gzip: bool,
    /// The number of the last line returned.
    pub line: u64,
    /// Bytes read so far (after gunzip).
    pub bytes: u64,
}

impl Lines {
    pub fn new(reader: ObjectReader, gzip: bool) -> Lines {
        Lines {
            reader,
            codec: AnyDelimiterCodec::new_with_max_length(
                b"\n".to_vec(),
                Vec::new(),
                MAX_LINE_BYTES,
            ),
            buf: BytesMut::with_capacity(64 << 10),
            eof: false,
            gzip,
            line: 0,
            bytes: 0,
        }
    }

    /// The next line, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Line>, ReadError> {
        loop {
            let decoded = if self.eof {
                self.codec.decode_eof(&mut self.buf)
            } else {
                self.codec.decode(&mut self.buf)
            };
            match decoded {
                Ok(Some(raw)) => {
                    self.line += 1;
                    let raw = raw.strip_suffix(b"\r").unwrap_or(&raw);
                    return Ok(Some(match std::str::from_utf8(raw) {
                        Ok(text) => Line::Text(text.to_owned()),
                        Err(e) => Line::NotUtf8(e.valid_up_to()),
                    }));
                }
                Ok(None) if self.eof => return Ok(None),
                Ok(None) => {}
                Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => {
                    self.line += 1;
                    return Ok(Some(Line::TooLong));
                }
                Err(AnyDelimiterCodecError::Io(e)) => return Err(ReadError::Transient(e)),
            }
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => self.eof = true,
                Ok(n) => self.bytes += n as u64,
                Err(e) if self.gzip && is_corrupt(&e) => return Err(ReadError::Corrupt(e)),
                Err(e) => return Err(ReadError::Transient(e)),
            }
        }
    }
}

/// What the gzip decoder reports for bytes that are not (all of) a gzip stream.
fn is_corrupt(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(bytes: Vec<u8>) -> Vec<Line> {
        let mut lines = Lines::new(Box::pin(std::io::Cursor::new(bytes)), false);
        let mut out = Vec::new();
        while let Some(l) = lines.next().await.unwrap() {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn lines_are_numbered_and_a_long_one_is_skipped_whole() {
        let mut bytes = b"a\r\n".to_vec();
        bytes.extend(vec![b'x'; MAX_LINE_BYTES * 3]);
        bytes.extend(b"\n\xff\xfe\nlast");
        let lines = all(bytes).await;
        assert_eq!(
            lines,
            vec![
                Line::Text("a".into()),
                Line::TooLong,
                Line::NotUtf8(0),
                Line::Text("last".into())
            ]
        );
        assert!(all(Vec::new()).await.is_empty());
    }
}
