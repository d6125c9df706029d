//! One row image of a rows event, decoded column by column straight into its JSON text: the
//! members of the image's JSON object, in column order.

use mysql_common::io::ParseBuf;
use mysql_common::misc::raw::int::LenEnc;
use mysql_common::misc::raw::RawInt;
use sameday_mysql::schema::TableSchema;
use sameday_mysql::value::binlog::write_value;

use crate::encode::ImageText;

/// Decodes one row image at the front of `buf` into `image` (reused from row to row).
pub(super) fn decode_image(
    schema: &TableSchema,
    cols: &bitvec::slice::BitSlice<u8>,
    buf: &mut &[u8],
    partial: bool,
    image: &mut ImageText,
) -> std::io::Result<()> {
    image.clear(schema.columns.len());
    let mut partial_json: Option<Vec<bool>> = None;
    if partial {
        let mut header = ParseBuf(buf);
        let options = *header.parse::<RawInt<LenEnc>>(())?;
        // PARTIAL_JSON_UPDATES = 1
        if options & 1 != 0 {
            let n = schema.json_columns;
            let bytes: &[u8] = header.parse(n.div_ceil(8))?;
            partial_json = Some((0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect());
        }
        *buf = header.0;
    }
    let present = cols.count_ones();
    if buf.len() < present.div_ceil(8) {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "row image cut short"));
    }
    let (null_bytes, rest) = buf.split_at(present.div_ceil(8));
    *buf = rest;
    let mut image_idx = 0usize;
    for (i, col) in schema.columns.iter().enumerate() {
        if !cols.get(i).map(|b| *b).unwrap_or(false) {
            continue;
        }
        let is_null = null_bytes[image_idx / 8] & (1 << (image_idx % 8)) != 0;
        image_idx += 1;
        // The image's members as the envelope writes them (`"name":value`, comma-separated),
        // so that an image without excluded columns is copied out in one piece.
        if image_idx > 1 {
            image.text.push(b',');
        }
        image.text.extend_from_slice(col.json_key.as_bytes());
        let start = image.text.len();
        if is_null {
            image.text.extend_from_slice(b"null");
        } else {
            let is_partial = match (&partial_json, col.json_ordinal) {
                (Some(bits), Some(o)) => bits.get(o).copied().unwrap_or(false),
                _ => false,
            };
            write_value(col, buf, is_partial, &mut image.text)
                .map_err(|e| std::io::Error::new(e.kind(), format!("column {}: {e}", col.name)))?;
        }
        image.spans[i] = Some((start as u32, image.text.len() as u32));
    }
    Ok(())
}
