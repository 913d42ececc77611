//! Frame headers: the type byte and length that open every message after startup.

use thiserror::Error;

/// The size of a frame header: one type byte and a 4-byte length.
pub const HEADER_LEN: usize = 5;

/// The header of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The message type byte (`Q`, `D`, `Z`, …).
    pub tag: u8,
    /// The length field: the body plus the 4 length bytes themselves.
    pub length: usize,
}

/// A frame header that cannot be valid.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below 4, which the protocol forbids.
    #[error("invalid length {length} in a message of type {tag:?}")]
    InvalidLength {
        /// The message type, as a character.
        tag: char,
        /// The length field as received.
        length: i32,
    },
    /// The frame is larger than the configured limit.
    #[error("a message of type {tag:?} and {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message type, as a character.
        tag: char,
        /// The length field as received.
        length: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl FrameHeader {
    /// Parses the header at the start of `buf`; `None` when fewer than five bytes are there.
    ///
    /// `limit` bounds the length field (the whole frame minus its type byte).
    #[inline]
    pub fn parse(buf: &[u8], limit: usize) -> Option<Result<FrameHeader, FrameError>> {
        let header: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        let tag = header[0];
        let raw = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        Some(if raw < 4 {
            Err(FrameError::InvalidLength {
                tag: char::from(tag),
                length: raw,
            })
        } else if raw as usize > limit {
            Err(FrameError::TooLarge {
                tag: char::from(tag),
                length: raw as usize,
                limit,
            })
        } else {
            Ok(FrameHeader {
                tag,
                length: raw as usize,
            })
        })
    }

    /// The whole frame's size on the wire: type byte, length field and body.
    #[inline]
    pub fn frame_len(&self) -> usize {
        1 + self.length
    }

    /// The body's size (after the length field).
    #[inline]
    pub fn body_len(&self) -> usize {
        self.length - 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_header_and_sizes() {
        let header = FrameHeader::parse(b"Q\0\0\0\x0eSELECT 1;\0", 1024)
            .unwrap()
            .unwrap();
        assert_eq!(
            header,
            FrameHeader {
                tag: b'Q',
                length: 14
            }
        );
        assert_eq!(header.frame_len(), 15);
        assert_eq!(header.body_len(), 10);
    }

    #[test]
    fn waits_for_five_bytes() {
        assert!(FrameHeader::parse(b"Q\0\0\0", 1024).is_none());
    }

    #[test]
    fn refuses_lengths_below_four_and_negative() {
        assert_eq!(
            FrameHeader::parse(b"Q\0\0\0\x03", 1024).unwrap(),
            Err(FrameError::InvalidLength {
                tag: 'Q',
                length: 3
            })
        );
        assert_eq!(
            FrameHeader::parse(b"D\xff\xff\xff\xff", 1024).unwrap(),
            Err(FrameError::InvalidLength {
                tag: 'D',
                length: -1
            })
        );
    }

    #[test]
    fn refuses_frames_over_the_limit() {
        assert_eq!(
            FrameHeader::parse(b"d\0\0\x10\x00", 1024).unwrap(),
            Err(FrameError::TooLarge {
                tag: 'd',
                length: 4096,
                limit: 1024
            })
        );
    }
}
