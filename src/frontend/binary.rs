//! The binary protocol's values: COM_STMT_EXECUTE parameters from the
//! client (parsed here, without opensrv's panicking parser), and binary
//! result-row values back to it, encoded as MariaDB encodes them.

use mysql_async::Value;
use mysql_async::consts::{ColumnFlags, ColumnType};

use super::packets::put_lenenc_bytes;

/// Why an execute packet could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("malformed COM_STMT_EXECUTE packet: {0}")]
    Malformed(&'static str),
    #[error("cursors are not supported; execute without a cursor")]
    Cursor,
}

/// One parsed COM_STMT_EXECUTE.
#[derive(Debug)]
pub struct Execute {
    pub statement: u32,
    pub values: Vec<Value>,
    /// The parameter types the client bound (kept for later executes, which
    /// may omit them).
    pub types: Vec<(u8, bool)>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ExecuteError> {
        if self.0.len() < n {
            return Err(ExecuteError::Malformed("value runs past the end of the packet"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ExecuteError> {
        Ok(self.take(1)?[0])
    }

    fn lenenc(&mut self) -> Result<u64, ExecuteError> {
        Ok(match self.u8()? {
            n @ 0..=0xFA => u64::from(n),
            0xFC => u64::from(u16::from_le_bytes(self.array()?)),
            0xFD => {
                let b = self.take(3)?;
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]))
            }
            0xFE => u64::from_le_bytes(self.array()?),
            _ => return Err(ExecuteError::Malformed("bad length prefix")),
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ExecuteError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// Parses a COM_STMT_EXECUTE payload (command byte included) for a statement
/// with `param_count` parameters. `previous_types` are the types bound by an
/// earlier execute; `long_data` the values sent with COM_STMT_SEND_LONG_DATA.
pub fn parse_execute(
    payload: &[u8],
    param_count: usize,
    previous_types: &[(u8, bool)],
    long_data: &mut std::collections::HashMap<(u32, u16), Vec<u8>>,
) -> Result<Execute, ExecuteError> {
    let mut r = Reader(payload);
    let _command = r.u8()?;
    let statement = u32::from_le_bytes(r.array()?);
    let flags = r.u8()?;
    if flags != 0 {
        return Err(ExecuteError::Cursor);
    }
    let _iterations = r.take(4)?;
    if param_count == 0 {
        return Ok(Execute {
            statement,
            values: Vec::new(),
            types: Vec::new(),
        });
    }
    let null_bitmap = r.take(param_count.div_ceil(8))?;
    let types = if r.u8()? == 1 {
        let mut types = Vec::with_capacity(param_count);
        for _ in 0..param_count {
            let [ty, flags] = r.array()?;
            types.push((ty, flags & 0x80 != 0));
        }
        types
    } else if previous_types.len() == param_count {
        previous_types.to_vec()
    } else {
        return Err(ExecuteError::Malformed("parameter types were never sent"));
    };
    let mut values = Vec::with_capacity(param_count);
    for (i, &(ty, unsigned)) in types.iter().enumerate() {
        if null_bitmap[i / 8] & (1 << (i % 8)) != 0 {
            values.push(Value::NULL);
            continue;
        }
        if let Some(data) = long_data.remove(&(statement, i as u16)) {
            values.push(Value::Bytes(data));
            continue;
        }
        values.push(read_value(&mut r, ty, unsigned)?);
    }
    Ok(Execute {
        statement,
        values,
        types,
    })
}

fn read_value(r: &mut Reader<'_>, ty: u8, unsigned: bool) -> Result<Value, ExecuteError> {
    let int = |v: i64, u: u64| if unsigned { Value::UInt(u) } else { Value::Int(v) };
    Ok(match ty {
        0x06 => Value::NULL,
        0x01 => {
            let b = r.u8()?;
            int(i64::from(b as i8), u64::from(b))
        }
        0x02 | 0x0d => {
            let b = r.array()?;
            int(i64::from(i16::from_le_bytes(b)), u64::from(u16::from_le_bytes(b)))
        }
        0x03 | 0x09 => {
            let b = r.array()?;
            int(i64::from(i32::from_le_bytes(b)), u64::from(u32::from_le_bytes(b)))
        }
        0x08 => {
            let b = r.array()?;
            int(i64::from_le_bytes(b), u64::from_le_bytes(b))
        }
        0x04 => Value::Float(f32::from_le_bytes(r.array()?)),
        0x05 => Value::Double(f64::from_le_bytes(r.array()?)),
        0x07 | 0x0a | 0x0c => {
            let len = r.u8()?;
            let b = r.take(usize::from(len))?;
            let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut us) = (0u16, 0u8, 0u8, 0u8, 0u8, 0u8, 0u32);
            if len >= 4 {
                y = u16::from_le_bytes([b[0], b[1]]);
                mo = b[2];
                d = b[3];
            }
            if len >= 7 {
                h = b[4];
                mi = b[5];
                s = b[6];
            }
            if len >= 11 {
                us = u32::from_le_bytes([b[7], b[8], b[9], b[10]]);
            }
            Value::Date(y, mo, d, h, mi, s, us)
        }
        0x0b => {
            let len = r.u8()?;
            let b = r.take(usize::from(len))?;
            if len >= 8 {
                let us = if len >= 12 {
                    u32::from_le_bytes([b[8], b[9], b[10], b[11]])
                } else {
                    0
                };
                Value::Time(b[0] == 1, u32::from_le_bytes([b[1], b[2], b[3], b[4]]), b[5], b[6], b[7], us)
            } else {
                Value::Time(false, 0, 0, 0, 0, 0)
            }
        }
        _ => {
            let len = r.lenenc()?;
            let len = usize::try_from(len).map_err(|_| ExecuteError::Malformed("value too long"))?;
            Value::Bytes(r.take(len)?.to_vec())
        }
    })
}

/// Appends one binary-protocol value for a column of `column_type`.
pub fn put_value(buf: &mut Vec<u8>, value: &Value, column_type: ColumnType, flags: ColumnFlags) {
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    let as_u64 = |v: &Value| match v {
        Value::Int(i) => *i as u64,
        Value::UInt(u) => *u,
        _ => 0,
    };
    match (column_type, value) {
        (ColumnType::MYSQL_TYPE_TINY, v @ (Value::Int(_) | Value::UInt(_))) => buf.push(as_u64(v) as u8),
        (ColumnType::MYSQL_TYPE_SHORT | ColumnType::MYSQL_TYPE_YEAR, v @ (Value::Int(_) | Value::UInt(_))) => {
            buf.extend_from_slice(&(as_u64(v) as u16).to_le_bytes())
        }
        (ColumnType::MYSQL_TYPE_LONG | ColumnType::MYSQL_TYPE_INT24, v @ (Value::Int(_) | Value::UInt(_))) => {
            buf.extend_from_slice(&(as_u64(v) as u32).to_le_bytes())
        }
        (ColumnType::MYSQL_TYPE_LONGLONG, v @ (Value::Int(_) | Value::UInt(_))) => {
            let _ = unsigned;
            buf.extend_from_slice(&as_u64(v).to_le_bytes())
        }
        (ColumnType::MYSQL_TYPE_FLOAT, Value::Float(f)) => buf.extend_from_slice(&f.to_le_bytes()),
        (ColumnType::MYSQL_TYPE_FLOAT, Value::Double(f)) => buf.extend_from_slice(&(*f as f32).to_le_bytes()),
        (ColumnType::MYSQL_TYPE_DOUBLE, Value::Double(f)) => buf.extend_from_slice(&f.to_le_bytes()),
        (ColumnType::MYSQL_TYPE_DOUBLE, Value::Float(f)) => buf.extend_from_slice(&f64::from(*f).to_le_bytes()),
        (_, Value::Date(y, mo, d, h, mi, s, us)) => {
            // MariaDB's shortest form: 0, 4 (date), 7 (+time), 11 (+microseconds).
            if *us != 0 {
                buf.push(11);
            } else if (*h, *mi, *s) != (0, 0, 0) {
                buf.push(7);
            } else if (*y, *mo, *d) != (0, 0, 0) {
                buf.push(4);
            } else {
                buf.push(0);
                return;
            }
            let len = buf[buf.len() - 1];
            buf.extend_from_slice(&y.to_le_bytes());
            buf.extend_from_slice(&[*mo, *d]);
            if len >= 7 {
                buf.extend_from_slice(&[*h, *mi, *s]);
            }
            if len == 11 {
                buf.extend_from_slice(&us.to_le_bytes());
            }
        }
        (_, Value::Time(neg, days, h, mi, s, us)) => {
            if *us != 0 {
                buf.push(12);
            } else if (*days, *h, *mi, *s) != (0, 0, 0, 0) {
                buf.push(8);
            } else {
                buf.push(0);
                return;
            }
            buf.push(u8::from(*neg));
            buf.extend_from_slice(&days.to_le_bytes());
            buf.extend_from_slice(&[*h, *mi, *s]);
            if *us != 0 {
                buf.extend_from_slice(&us.to_le_bytes());
            }
        }
        (_, Value::Bytes(b)) => put_lenenc_bytes(buf, b),
        // A value whose type does not match its column's: send its text.
        (_, other) => put_lenenc_bytes(buf, other.as_sql(true).trim_matches('\'').as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute_packet(stmt: u32, types: &[(u8, u8)], nulls: u8, values: &[u8]) -> Vec<u8> {
        let mut p = vec![0x17];
        p.extend_from_slice(&stmt.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(nulls);
        p.push(1);
        for (t, f) in types {
            p.extend_from_slice(&[*t, *f]);
        }
        p.extend_from_slice(values);
        p
    }

    #[test]
    fn parses_typed_parameters() {
        let mut values = Vec::new();
        values.extend_from_slice(&(-5i64).to_le_bytes());
        values.extend_from_slice(&u64::MAX.to_le_bytes());
        values.push(3);
        values.extend_from_slice(b"abc");
        values.extend_from_slice(&[7, 0xE8, 0x07, 2, 29, 13, 14, 15]);
        let packet = execute_packet(9, &[(0x08, 0), (0x08, 0x80), (0xfd, 0), (0x0c, 0), (0x06, 0)], 0b10000, &values);
        let mut long = Default::default();
        let e = parse_execute(&packet, 5, &[], &mut long).unwrap();
        assert_eq!(e.statement, 9);
        assert_eq!(
            e.values,
            vec![
                Value::Int(-5),
                Value::UInt(u64::MAX),
                Value::Bytes(b"abc".to_vec()),
                Value::Date(2024, 2, 29, 13, 14, 15, 0),
                Value::NULL
            ]
        );
    }

    #[test]
    fn truncated_packets_are_errors_not_panics() {
        let packet = execute_packet(1, &[(0x08, 0)], 0, &[1, 2, 3]);
        let mut long = Default::default();
        assert!(parse_execute(&packet, 1, &[], &mut long).is_err());
        assert!(parse_execute(&[0x17, 1], 1, &[], &mut long).is_err());
        let no_types = {
            let mut p = execute_packet(1, &[], 0, &[]);
            let last = p.len() - 1;
            p[last] = 0;
            p
        };
        assert!(parse_execute(&no_types, 1, &[], &mut long).is_err());
        for len in 0..packet.len() {
            let _ = parse_execute(&packet[..len], 1, &[], &mut long);
        }
    }

    #[test]
    fn long_data_replaces_the_inline_value() {
        let packet = execute_packet(4, &[(0xfc, 0)], 0, &[]);
        let mut long = std::collections::HashMap::new();
        long.insert((4, 0), b"big".to_vec());
        let e = parse_execute(&packet, 1, &[], &mut long).unwrap();
        assert_eq!(e.values, vec![Value::Bytes(b"big".to_vec())]);
        assert!(long.is_empty());
    }

    #[test]
    fn dates_use_the_shortest_encoding() {
        let mut b = Vec::new();
        put_value(&mut b, &Value::Date(2024, 1, 2, 0, 0, 0, 0), ColumnType::MYSQL_TYPE_DATE, ColumnFlags::empty());
        assert_eq!(b, vec![4, 0xE8, 0x07, 1, 2]);
        b.clear();
        put_value(&mut b, &Value::Time(true, 1, 2, 3, 4, 5), ColumnType::MYSQL_TYPE_TIME, ColumnFlags::empty());
        assert_eq!(b, vec![12, 1, 1, 0, 0, 0, 2, 3, 4, 5, 0, 0, 0]);
    }
}
