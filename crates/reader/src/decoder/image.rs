//! One row image of a rows event, decoded column by column into reused cells.

use mysql_common::io::ParseBuf;
use mysql_common::misc::raw::int::LenEnc;
use mysql_common::misc::raw::RawInt;
use sameday_mysql::schema::TableSchema;
use sameday_mysql::value::binlog::{decode_cell, Cell};

/// Decodes one row image into `cells` (one slot per column; `None` = not in the image).
pub(super) fn decode_image(
    schema: &TableSchema,
    cols: &bitvec::slice::BitSlice<u8>,
    buf: &mut ParseBuf<'_>,
    partial: bool,
    cells: &mut Vec<Option<Cell>>,
) -> std::io::Result<()> {
    cells.clear();
    cells.resize(schema.columns.len(), None);
    let mut partial_json: Option<Vec<bool>> = None;
    if partial {
        let options = *buf.parse::<RawInt<LenEnc>>(())?;
        // PARTIAL_JSON_UPDATES = 1
        if options & 1 != 0 {
            let n = schema.json_columns;
            let bytes: &[u8] = buf.parse(n.div_ceil(8))?;
            partial_json = Some((0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect());
        }
    }
    let present = cols.count_ones();
    let null_bytes: &[u8] = buf.parse(present.div_ceil(8))?;
    let mut image_idx = 0usize;
    for (i, col) in schema.columns.iter().enumerate() {
        if !cols.get(i).map(|b| *b).unwrap_or(false) {
            continue;
        }
        let is_null = null_bytes[image_idx / 8] & (1 << (image_idx % 8)) != 0;
        image_idx += 1;
        if is_null {
            cells[i] = Some(Cell::Null);
            continue;
        }
        let is_partial = match (&partial_json, col.json_ordinal) {
            (Some(bits), Some(o)) => bits.get(o).copied().unwrap_or(false),
            _ => false,
        };
        cells[i] = Some(
            decode_cell(col, buf, is_partial)
                .map_err(|e| std::io::Error::new(e.kind(), format!("column {}: {e}", col.name)))?,
        );
    }
    Ok(())
}
