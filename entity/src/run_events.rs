use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "run_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// SSE event name: message | error | done
    pub event: String,
    /// The event's JSON payload exactly as sent to clients; for a row of several events,
    /// their payloads one after another.
    #[sea_orm(column_type = "Text")]
    pub data: String,
    /// For a row of several consecutive events (from `seq` on): their payloads' lengths in
    /// bytes, comma-separated. None for a row of one event.
    #[sea_orm(column_type = "Text", nullable)]
    pub sizes: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A row of several events whose `sizes` do not describe its `data`: written by something
/// other than the gateway, or damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRow {
    pub seq: i64,
    pub reason: &'static str,
}

impl std::fmt::Display for MalformedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event log row {} is malformed: {}",
            self.seq, self.reason
        )
    }
}

impl std::error::Error for MalformedRow {}

/// How many events a row with these `sizes` holds.
pub fn event_count(sizes: Option<&str>) -> i64 {
    sizes.map_or(1, |sizes| sizes.split(',').count() as i64)
}

/// The `data` and `sizes` of a row of several events: the payloads one after another, and
/// their lengths in bytes.
pub fn join<'a>(payloads: impl ExactSizeIterator<Item = &'a str> + Clone) -> (String, String) {
    let mut sizes = String::with_capacity(payloads.len() * 5);
    let mut data = String::with_capacity(payloads.clone().map(str::len).sum());
    for (i, payload) in payloads.enumerate() {
        if i > 0 {
            sizes.push(',');
        }
        sizes.push_str(itoa(payload.len()).as_str());
        data.push_str(payload);
    }
    (data, sizes)
}

/// The payloads of a row starting at `seq`, in order: `data` itself for a row of one event.
pub fn split<'a>(
    seq: i64,
    data: &'a str,
    sizes: Option<&str>,
) -> Result<Vec<&'a str>, MalformedRow> {
    let Some(sizes) = sizes else {
        return Ok(vec![data]);
    };
    let malformed = |reason| MalformedRow { seq, reason };
    let mut payloads = Vec::with_capacity(sizes.len() / 3 + 1);
    let mut rest = data;
    for size in sizes.split(',') {
        let size: usize = size
            .parse()
            .map_err(|_| malformed("a size is not a number"))?;
        if size > rest.len() {
            return Err(malformed("the sizes add up to more than the data"));
        }
        if !rest.is_char_boundary(size) {
            return Err(malformed("a size ends inside a character"));
        }
        let (one, after) = rest.split_at(size);
        payloads.push(one);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(malformed("the data is longer than its sizes"));
    }
    Ok(payloads)
}

/// A length as decimal digits, without the formatting machinery (one per logged event).
fn itoa(mut n: usize) -> Digits {
    let mut digits = Digits {
        buf: [0; 20],
        start: 20,
    };
    loop {
        digits.start -= 1;
        digits.buf[digits.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return digits;
        }
    }
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or_default()
    }
}
