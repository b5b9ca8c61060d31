//! The subset of EOSIO ABI binary serialization the protocol needs
//! (fio-standards.md section 5). The reader is bounds-checked everywhere:
//! its input is hostile.

use crate::error::{Error, ErrorCode, Result};
use crate::keys::PublicKey;

#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn varuint32(&mut self, mut v: u32) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }
    pub fn string(&mut self, s: &str) {
        let len = u32::try_from(s.len()).expect("strings here are far below 4 GiB");
        self.varuint32(len);
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub fn opt_string(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.string(s);
            }
        }
    }
    pub fn public_key(&mut self, k: &PublicKey) {
        self.u8(0);
        self.buf.extend_from_slice(&k.compressed());
    }
}

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

fn truncated(what: &str) -> Error {
    Error::new(ErrorCode::AbiTruncated, format!("input ends inside {what}"))
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| truncated(what))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn varuint32(&mut self, what: &str) -> Result<u32> {
        let mut v: u64 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return u32::try_from(v).map_err(|_| {
                    Error::field(ErrorCode::OutOfRange, what, "varuint32 exceeds 32 bits")
                });
            }
        }
        Err(Error::field(
            ErrorCode::OutOfRange,
            what,
            "varuint32 longer than 5 bytes",
        ))
    }
    pub fn string(&mut self, what: &str) -> Result<String> {
        let len = self.varuint32(what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::field(ErrorCode::AbiBadUtf8, what, "string is not UTF-8"))
    }
    pub fn opt_string(&mut self, what: &str) -> Result<Option<String>> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => self.string(what).map(Some),
            _ => Err(Error::field(
                ErrorCode::OutOfRange,
                what,
                "optional flag must be 0 or 1",
            )),
        }
    }
    pub fn public_key(&mut self, what: &str) -> Result<PublicKey> {
        if self.u8(what)? != 0 {
            return Err(Error::field(
                ErrorCode::BadPublicKey,
                what,
                "only K1 public keys (type 0) are supported",
            ));
        }
        PublicKey::from_compressed(self.take(33, what)?).map_err(|e| e.in_field(what))
    }
    pub fn finish(self) -> Result<()> {
        if self.pos != self.data.len() {
            return Err(Error::new(
                ErrorCode::AbiTrailingBytes,
                format!(
                    "{} bytes left after the last field",
                    self.data.len() - self.pos
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varuint_round_trip() {
        for v in [0u32, 1, 127, 128, 300, 16383, 16384, u32::MAX] {
            let mut w = Writer::default();
            w.varuint32(v);
            let mut r = Reader::new(&w.buf);
            assert_eq!(r.varuint32("v").unwrap(), v);
            r.finish().unwrap();
        }
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x7f])
            .varuint32("v")
            .is_err());
        assert!(Reader::new(&[0x80]).varuint32("v").is_err());
    }

    #[test]
    fn empty_string_is_not_null() {
        let mut w = Writer::default();
        w.opt_string(Some(""));
        w.opt_string(None);
        assert_eq!(w.buf, [1, 0, 0]);
    }
}
