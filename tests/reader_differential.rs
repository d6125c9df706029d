//! The reader's values against the server's own, for generated values of every column type:
//! rows are written with SQL, then each binlog image (insert after, update before and after,
//! delete before) is compared with the same row read back through a SELECT (the nightly
//! batch's row mapping, over the binary protocol: an independent decoding of the same
//! values). A fixed seed keeps every run the same; a mismatch names row, column and both
//! values. Covered: integers of every width (edges and random), DECIMAL, FLOAT/DOUBLE, BIT,
//! DATE/DATETIME/TIMESTAMP/TIME with several fsp (zero dates, negative TIME with fractions),
//! YEAR, text in utf8mb4, utf8mb3, latin1 and cp1251, binary, ENUM, SET, JSON, GEOMETRY
//! (POINT, LINESTRING, POLYGON with and without a hole, SRID 0 and 4326; base64 of the
//! stored bytes on both sides) and NULL.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use sameday_core::rule::ScheduleRule;
use sameday_core::Op;
use sameday_testkit::MariaDb;
use sameday_worker::nightly::table::{open_session, RuleTable, TableReader};
use serde_json::{json, Map, Value};

const ROWS: u64 = 120;

/// Row images by id.
type Images = HashMap<i64, Map<String, Value>>;

const DDL: &str = "(
    id INT PRIMARY KEY, due_at DATETIME,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    d2 DECIMAL(10,2), d30 DECIMAL(30,10), d0 DECIMAL(18,0), fl FLOAT, db DOUBLE,
    b1 BIT(1), b13 BIT(13), b64 BIT(64),
    dt DATE, dtm0 DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6),
    ts0 TIMESTAMP NULL DEFAULT NULL, ts2 TIMESTAMP(2) NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
    tm0 TIME, tm1 TIME(1), tm2 TIME(2), tm3 TIME(3), tm4 TIME(4), tm5 TIME(5), tm6 TIME(6),
    y YEAR,
    vc VARCHAR(40) CHARACTER SET utf8mb4, ch CHAR(8) CHARACTER SET utf8mb4, tx TEXT CHARACTER SET utf8mb4,
    l1 VARCHAR(20) CHARACTER SET latin1, u3 VARCHAR(20) CHARACTER SET utf8mb3, cy VARCHAR(20) CHARACTER SET cp1251,
    vb VARBINARY(16), bl BLOB,
    en ENUM('a','bb','ccc'), st SET('x','y','z'), js JSON,
    ge GEOMETRY, pt POINT, ls LINESTRING, pg POLYGON
)";

/// xorshift64*: deterministic, no dependency.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn signed(&mut self, bits: u32) -> i64 {
        let v = self.next() as i64;
        if bits == 64 {
            return v;
        }
        v >> (64 - bits)
    }

    fn unsigned(&mut self, bits: u32) -> u64 {
        if bits == 64 {
            self.next()
        } else {
            self.next() >> (64 - bits)
        }
    }

    /// An edge value half of the time, a random one otherwise.
    fn int(&mut self, bits: u32, unsigned: bool) -> String {
        let edge = self.below(2) == 0;
        match (unsigned, edge) {
            (true, true) => ["0", "1", &(u64::MAX >> (64 - bits)).to_string()][self.below(3) as usize].to_string(),
            (true, false) => self.unsigned(bits).to_string(),
            (false, true) => {
                let max = (i64::MAX >> (64 - bits)).to_string();
                let min = (i64::MIN >> (64 - bits)).to_string();
                ["0", "-1", "1", &max, &min][self.below(5) as usize].to_string()
            }
            (false, false) => self.signed(bits).to_string(),
        }
    }

    fn decimal(&mut self, int_digits: u32, frac_digits: u32) -> String {
        let digits = |g: &mut Gen, n: u32| (0..n).map(|_| char::from(b'0' + g.below(10) as u8)).collect::<String>();
        let width = 1 + self.below(u64::from(int_digits)) as u32;
        let int = digits(self, width);
        let sign = if self.below(2) == 0 { "-" } else { "" };
        if frac_digits == 0 {
            format!("'{sign}{int}'")
        } else {
            format!("'{sign}{int}.{}'", digits(self, frac_digits))
        }
    }

    fn fraction(&mut self, fsp: u32) -> String {
        if fsp == 0 {
            return String::new();
        }
        format!(".{}", (0..fsp).map(|_| char::from(b'0' + self.below(10) as u8)).collect::<String>())
    }

    fn date(&mut self, from_year: u64, years: u64) -> String {
        format!("{:04}-{:02}-{:02}", from_year + self.below(years), 1 + self.below(12), 1 + self.below(28))
    }

    fn clock(&mut self) -> String {
        format!("{:02}:{:02}:{:02}", self.below(24), self.below(60), self.below(60))
    }

    fn time(&mut self, fsp: u32) -> String {
        let sign = if self.below(2) == 0 { "-" } else { "" };
        let hours = [0, 1, 23, 24, 100, 838][self.below(6) as usize].min(self.below(839));
        let frac = self.fraction(fsp);
        if hours == 838 && !frac.is_empty() {
            return format!("'{sign}838:59:59'");
        }
        format!("'{sign}{hours:02}:{:02}:{:02}{frac}'", self.below(60), self.below(60))
    }

    fn text(&mut self, alphabet: &[&str], max: u64) -> String {
        let n = self.below(max + 1);
        let s: String = (0..n).map(|_| alphabet[self.below(alphabet.len() as u64) as usize]).collect();
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    }

    fn bytes(&mut self, max: u64) -> String {
        let n = self.below(max + 1);
        let hex: String = (0..n).map(|_| format!("{:02X}", self.below(256))).collect();
        format!("X'{hex}'")
    }

    /// A value for each column, as SQL literals, in DDL order after `id` and `due_at`.
    fn row(&mut self) -> Vec<String> {
        const UTF8: &[&str] = &["a", "Z", " ", "é", "ü", "€", "家", "😀", "🎉", "'", "\\", "\"", "\t", "x"];
        const LATIN1: &[&str] = &["a", "é", "ÿ", "ß", "£", " ", "'", "Ø"];
        let null_or = |g: &mut Gen, v: String| if g.below(12) == 0 { "NULL".to_string() } else { v };
        let mut v = Vec::new();
        for (bits, unsigned) in [
            (8, false),
            (8, true),
            (16, false),
            (16, true),
            (24, false),
            (24, true),
            (32, false),
            (32, true),
            (64, false),
            (64, true),
        ] {
            let x = self.int(bits, unsigned);
            v.push(null_or(self, x));
        }
        for (i, f) in [(8, 2), (20, 10), (18, 0)] {
            let x = self.decimal(i, f);
            v.push(null_or(self, x));
        }
        // FLOAT and DOUBLE: values exact in binary, so both paths print the same digits.
        let fl = format!("{}", (self.signed(16) as f64) / 4.0);
        v.push(null_or(self, fl));
        let db = format!("{}", (self.signed(40) as f64) / 1024.0);
        v.push(null_or(self, db));
        for bits in [1, 13, 64] {
            let x = self.unsigned(bits).to_string();
            v.push(null_or(self, x));
        }
        // Zero dates too (sql_mode '' lets them in), as MySQL's own zero value.
        let dt = if self.below(8) == 0 { "'0000-00-00'".to_string() } else { format!("'{}'", self.date(1000, 9000)) };
        v.push(null_or(self, dt));
        for fsp in [0, 3, 6] {
            let x = if self.below(8) == 0 {
                "'0000-00-00 00:00:00'".to_string()
            } else {
                format!("'{} {}{}'", self.date(1000, 9000), self.clock(), self.fraction(fsp))
            };
            v.push(null_or(self, x));
        }
        for fsp in [0, 2, 6] {
            let x = format!("'{} {}{}'", self.date(1971, 66), self.clock(), self.fraction(fsp));
            v.push(null_or(self, x));
        }
        for fsp in 0..=6 {
            let x = self.time(fsp);
            v.push(null_or(self, x));
        }
        let y = (1901 + self.below(255)).to_string();
        v.push(null_or(self, y));
        for (alphabet, max) in [(UTF8, 40), (UTF8, 8), (UTF8, 200)] {
            let x = self.text(alphabet, max);
            v.push(null_or(self, x));
        }
        const BMP: &[&str] = &["a", "é", "€", "家", "ñ", " ", "'"];
        const CYRILLIC: &[&str] = &["П", "р", "и", "в", "е", "т", " ", "ё"];
        for (alphabet, max) in [(LATIN1, 20), (BMP, 20), (CYRILLIC, 20)] {
            let x = self.text(alphabet, max);
            v.push(null_or(self, x));
        }
        for max in [16, 300] {
            let x = self.bytes(max);
            v.push(null_or(self, x));
        }
        let en = ["'a'", "'bb'", "'ccc'"][self.below(3) as usize].to_string();
        v.push(null_or(self, en));
        let st = ["''", "'x'", "'y,z'", "'x,y,z'"][self.below(4) as usize].to_string();
        v.push(null_or(self, st));
        let js = format!(
            "'{{\"n\": {}, \"s\": \"{}\", \"a\": [1, {}, null], \"o\": {{\"t\": true}}}}'",
            self.signed(32),
            ["", "é", "x y"][self.below(3) as usize],
            self.below(1000)
        );
        v.push(null_or(self, js));
        // GEOMETRY of each kind in the untyped column, then one typed column each; SRID 0
        // or 4326, coordinates exact in binary.
        let kind = self.below(3);
        let ge = self.geometry(kind);
        v.push(null_or(self, ge));
        for kind in 0..3 {
            let x = self.geometry(kind);
            v.push(null_or(self, x));
        }
        v
    }

    fn coordinate(&mut self) -> String {
        format!("{}", (self.signed(24) as f64) / 16.0)
    }

    fn point(&mut self) -> String {
        format!("{} {}", self.coordinate(), self.coordinate())
    }

    /// A POINT (0), LINESTRING (1) or POLYGON (2, a closed ring, sometimes with a hole).
    fn geometry(&mut self, kind: u64) -> String {
        let wkt = match kind {
            0 => format!("POINT({})", self.point()),
            1 => {
                let n = 2 + self.below(6);
                let points: Vec<String> = (0..n).map(|_| self.point()).collect();
                format!("LINESTRING({})", points.join(", "))
            }
            _ => {
                let (x, y, w) = (self.signed(16), self.signed(16), 1 + self.below(1000) as i64);
                let ring = |x: i64, y: i64, w: i64| {
                    format!("({x} {y}, {} {y}, {} {}, {x} {}, {x} {y})", x + w, x + w, y + w, y + w)
                };
                match self.below(2) {
                    0 => format!("POLYGON({})", ring(x, y, w)),
                    _ => format!("POLYGON({}, {})", ring(x, y, w * 4), ring(x + w, y + w, w)),
                }
            }
        };
        let srid = [0, 4326][self.below(2) as usize];
        format!("ST_GeomFromText('{wkt}', {srid})")
    }
}

const COLUMNS: &[&str] = &[
    "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "d2", "d30", "d0", "fl", "db", "b1", "b13", "b64",
    "dt", "dtm0", "dtm3", "dtm6", "ts0", "ts2", "ts6", "tm0", "tm1", "tm2", "tm3", "tm4", "tm5", "tm6", "y", "vc",
    "ch", "tx", "l1", "u3", "cy", "vb", "bl", "en", "st", "js", "ge", "pt", "ls", "pg",
];

/// The rows as the batch's SQL mapping reads them now, by id.
async fn read_back(rule: &ScheduleRule, port: u16) -> Images {
    let source = common::source_config(port);
    let mut conn = open_session(&source).await.unwrap();
    let table = RuleTable::check(&mut conn, rule, 1000, true).await.unwrap();
    conn.close().await;
    let mut reader = TableReader::new(&source, &table);
    let lower = mysql_async::Value::Date(2031, 1, 1, 0, 0, 0, 0);
    let upper = mysql_async::Value::Date(2031, 2, 1, 0, 0, 0, 0);
    let page = reader.page(&lower, &upper, None).await.unwrap();
    reader.close().await;
    page.rows.into_iter().map(|r| (r["id"].as_i64().unwrap(), r)).collect()
}

fn compare(what: &str, binlog: &Map<String, Value>, server: &Map<String, Value>, mismatches: &mut Vec<String>) {
    for c in COLUMNS {
        // A column missing on both sides would otherwise compare equal.
        if binlog.get(*c).is_none() || binlog.get(*c) != server.get(*c) {
            mismatches.push(format!("{what} column {c}: binlog {:?}, server {:?}", binlog.get(*c), server.get(*c)));
        }
    }
}

#[tokio::test]
async fn generated_values_of_every_type_equal_the_servers_own() {
    common::set_aws_env();
    let env = common::Env::new("differential", 1).await;
    let maria = MariaDb::shared();
    let db = &env.db;
    maria.exec(&format!("CREATE TABLE {db}.t {DDL}")).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let reader =
        tokio::spawn(sameday_reader::run_reader(env.config(&common::current_position().await), shutdown.clone()));
    let mut gen = Gen(0x5EED_CAFE_F00D);
    let insert = |gen: &mut Gen, id: u64| {
        format!("INSERT INTO {db}.t VALUES ({id}, '2031-01-15 12:00:00', {});", gen.row().join(", "))
    };
    let sql: String = (1..=ROWS).map(|id| insert(&mut gen, id)).collect();
    maria.exec(&format!("SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00'; {sql}")).await;
    let rule: ScheduleRule = serde_json::from_value(json!({
        "name": "diff", "db": db, "table": "t", "key_columns": ["id"], "due_column": "due_at", "due_type": "datetime",
        "time_zone": "UTC", "input_columns": COLUMNS,
        "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:s",
    }))
    .unwrap();
    let inserted = read_back(&rule, maria.port()).await;

    // Every row updated to new values (both images compared), then half of them deleted.
    let updates: String = (1..=ROWS)
        .map(|id| {
            let values = gen.row();
            let sets: Vec<String> = COLUMNS.iter().zip(&values).map(|(c, v)| format!("{c} = {v}")).collect();
            format!("UPDATE {db}.t SET {} WHERE id = {id};", sets.join(", "))
        })
        .collect();
    maria.exec(&format!("SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00'; {updates}")).await;
    let updated = read_back(&rule, maria.port()).await;
    maria.exec(&format!("DELETE FROM {db}.t WHERE id % 2 = 0")).await;

    let records = env.wait_for_records((ROWS * 2 + ROWS / 2) as usize, Duration::from_secs(60)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (_, e) in &records {
        let id = e.key["id"].as_i64().unwrap();
        let image = |img: &Option<Map<String, Value>>| img.clone().unwrap_or_default();
        let checks: Vec<(&str, Map<String, Value>, &Images)> = match e.op {
            Op::Insert => vec![("insert after", image(&e.after), &inserted)],
            Op::Update => {
                vec![("update before", image(&e.before), &inserted), ("update after", image(&e.after), &updated)]
            }
            Op::Delete => vec![("delete before", image(&e.before), &updated)],
        };
        for (what, binlog, server) in checks {
            compare(&format!("row {id}, {what}"), &binlog, &server[&id], &mut mismatches);
            compared += 1;
        }
    }
    assert_eq!(compared as u64, ROWS * 3 + ROWS / 2, "every image compared");
    let geometries = inserted.values().filter(|r| ["ge", "pt", "ls", "pg"].iter().all(|c| r[*c].is_string())).count();
    assert!(geometries > ROWS as usize / 2, "most rows hold a value in every GEOMETRY column ({geometries})");
    assert!(
        mismatches.is_empty(),
        "{} mismatches, the first:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}
