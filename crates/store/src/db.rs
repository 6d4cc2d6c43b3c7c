//! The two backends behind one small interface: statements written once (SQL that SQLite and
//! PostgreSQL both accept, with `?N` placeholders), parameters and rows as plain values.
//!
//! SQLite is one connection behind a mutex (it serialises writers anyway); a thread may
//! [`Backend::hold_if_free`] it for several calls, which then use it without waiting.
//! PostgreSQL is a small pool of connections, each with its prepared statements cached.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::{Result, StoreError};

/// A parameter of a statement.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_owned())
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(v)
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::Text(v.clone())
    }
}
impl From<&[u8]> for Param {
    fn from(v: &[u8]) -> Self {
        Param::Blob(v.to_vec())
    }
}
impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Param::Null, Param::from)
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Param::Null, Param::Int)
    }
}

/// Builds a parameter list: `params![a, b]`.
macro_rules! params {
    ($($p:expr),* $(,)?) => { &[$($crate::db::Param::from($p)),*][..] };
}
pub(crate) use params;

/// A value of a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// One row of a result, its values by column name.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    names: Arc<[String]>,
    vals: Vec<Val>,
}

impl Row {
    /// The columns whose names start with `prefix`, named without it (one statement's row
    /// may carry two jobs).
    pub(crate) fn sub(&self, prefix: &str) -> Row {
        let (names, vals): (Vec<String>, Vec<Val>) = self
            .names
            .iter()
            .zip(&self.vals)
            .filter_map(|(n, v)| Some((n.strip_prefix(prefix)?.to_owned(), v.clone())))
            .unzip();
        Row {
            names: names.into(),
            vals,
        }
    }

    fn get(&self, name: &str) -> Result<&Val> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.vals[i])
            .ok_or_else(|| StoreError::Column(name.to_owned()))
    }

    pub(crate) fn i64(&self, name: &str) -> Result<i64> {
        match self.get(name)? {
            Val::Int(i) => Ok(*i),
            _ => Err(StoreError::Column(name.to_owned())),
        }
    }

    pub(crate) fn opt_i64(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name)? {
            Val::Null => Ok(None),
            Val::Int(i) => Ok(Some(*i)),
            _ => Err(StoreError::Column(name.to_owned())),
        }
    }

    pub(crate) fn string(&self, name: &str) -> Result<String> {
        match self.get(name)? {
            Val::Text(s) => Ok(s.clone()),
            _ => Err(StoreError::Column(name.to_owned())),
        }
    }

    pub(crate) fn opt_string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name)? {
            Val::Null => Ok(None),
            Val::Text(s) => Ok(Some(s.clone())),
            _ => Err(StoreError::Column(name.to_owned())),
        }
    }

    /// A text column read as a typed value (a status, a conclusion): an unknown one is an
    /// error, not a panic.
    pub(crate) fn value<T: std::str::FromStr<Err = StoreError>>(&self, name: &str) -> Result<T> {
        self.string(name)?.parse()
    }

    pub(crate) fn opt_value<T: std::str::FromStr<Err = StoreError>>(
        &self,
        name: &str,
    ) -> Result<Option<T>> {
        self.opt_string(name)?.map(|s| s.parse()).transpose()
    }

    pub(crate) fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        match self.get(name)? {
            Val::Null => Ok(Vec::new()),
            Val::Blob(b) => Ok(b.clone()),
            Val::Text(s) => Ok(s.clone().into_bytes()),
            Val::Int(_) => Err(StoreError::Column(name.to_owned())),
        }
    }

    /// The first column, as an integer (`count(*)`, `RETURNING id`).
    pub(crate) fn first_i64(&self) -> Result<i64> {
        match self.vals.first() {
            Some(Val::Int(i)) => Ok(*i),
            _ => Err(StoreError::Column("0".into())),
        }
    }
}

/// Which SQL a statement may need to differ in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A connection (or a transaction on one).
pub(crate) trait Db {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>>;
    fn query_opt(&mut self, sql: &str, params: &[Param]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    fn query_one(&mut self, sql: &str, params: &[Param]) -> Result<Row> {
        self.query_opt(sql, params)?.ok_or(StoreError::NoRow)
    }
    fn batch(&mut self, sql: &str) -> Result<()>;
}

// ---- SQLite ----

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn sqlite_rows(stmt: &mut rusqlite::Statement<'_>, params: &[Param]) -> Result<Vec<Row>> {
    let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let n = names.len();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            use rusqlite::types::ValueRef;
            vals.push(match r.get_ref(i)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(i) => Val::Int(i),
                ValueRef::Real(f) => Val::Int(f as i64),
                ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Val::Blob(b.to_vec()),
            });
        }
        out.push(Row {
            names: names.clone(),
            vals,
        });
    }
    Ok(out)
}

fn sqlite_execute(c: &rusqlite::Connection, sql: &str, params: &[Param]) -> Result<u64> {
    let mut stmt = c.prepare_cached(sql)?;
    Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
}

fn sqlite_query(c: &rusqlite::Connection, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
    let mut stmt = c.prepare_cached(sql)?;
    sqlite_rows(&mut stmt, params)
}

impl Db for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        sqlite_execute(self, sql, params)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        sqlite_query(self, sql, params)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.execute_batch(sql)?)
    }
}

// ---- PostgreSQL ----

impl postgres::types::ToSql for Param {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::{IsNull, Type};
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Param::Int(i) => i.to_sql(ty, out),
            Param::Text(s) => s.as_str().to_sql(ty, out),
            Param::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// `?1` → `$1`: statements are written once, for both.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c == '?' && !in_string && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A PostgreSQL connection with its prepared statements.
pub(crate) struct PgConn {
    client: postgres::Client,
    statements: Statements,
}

fn pg_rows(rows: Vec<postgres::Row>) -> Result<Vec<Row>> {
    use postgres::types::Type;
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let names: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let types: Vec<Type> = first.columns().iter().map(|c| c.type_().clone()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut vals = Vec::with_capacity(types.len());
        for (i, t) in types.iter().enumerate() {
            let v = match *t {
                Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int),
                Type::INT4 => r
                    .try_get::<_, Option<i32>>(i)?
                    .map_or(Val::Null, |x| Val::Int(i64::from(x))),
                Type::INT2 => r
                    .try_get::<_, Option<i16>>(i)?
                    .map_or(Val::Null, |x| Val::Int(i64::from(x))),
                Type::NUMERIC | Type::FLOAT8 | Type::FLOAT4 => {
                    // Not used by the schema; read as text for completeness.
                    Val::Null
                }
                Type::BYTEA => r
                    .try_get::<_, Option<Vec<u8>>>(i)?
                    .map_or(Val::Null, Val::Blob),
                Type::BOOL => r
                    .try_get::<_, Option<bool>>(i)?
                    .map_or(Val::Null, |b| Val::Int(i64::from(b))),
                _ => r
                    .try_get::<_, Option<String>>(i)?
                    .map_or(Val::Null, Val::Text),
            };
            vals.push(v);
        }
        out.push(Row {
            names: names.clone(),
            vals,
        });
    }
    Ok(out)
}

impl PgConn {
    pub(crate) fn connect(url: &str) -> Result<PgConn> {
        Ok(PgConn {
            client: postgres::Client::connect(url, postgres::NoTls)?,
            statements: HashMap::new(),
        })
    }

    /// Runs `f` in a transaction: committed if it returns Ok, rolled back otherwise.
    pub(crate) fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut PgTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let PgConn { client, statements } = self;
        let tx = client.transaction()?;
        let mut t = PgTx { tx, statements };
        let out = f(&mut t)?;
        t.tx.commit()?;
        Ok(out)
    }
}

type Statements = HashMap<String, postgres::Statement>;

/// A statement prepared once per connection (a transaction uses its connection's cache).
fn pg_statement(
    client: &mut impl postgres::GenericClient,
    cache: &mut Statements,
    sql: &str,
) -> Result<postgres::Statement> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(&pg_sql(sql))?;
    cache.insert(sql.to_owned(), s.clone());
    Ok(s)
}

fn pg_execute(
    client: &mut impl postgres::GenericClient,
    cache: &mut Statements,
    sql: &str,
    params: &[Param],
) -> Result<u64> {
    let s = pg_statement(client, cache, sql)?;
    Ok(client.execute(&s, &refs(params))?)
}

fn pg_query(
    client: &mut impl postgres::GenericClient,
    cache: &mut Statements,
    sql: &str,
    params: &[Param],
) -> Result<Vec<Row>> {
    let s = pg_statement(client, cache, sql)?;
    pg_rows(client.query(&s, &refs(params))?)
}

fn refs(params: &[Param]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl Db for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        pg_execute(&mut self.client, &mut self.statements, sql, params)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        pg_query(&mut self.client, &mut self.statements, sql, params)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }
}

/// A transaction on a PostgreSQL connection.
pub(crate) struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut Statements,
}

impl Db for PgTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        pg_execute(&mut self.tx, self.statements, sql, params)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        pg_query(&mut self.tx, self.statements, sql, params)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.tx.batch_execute(sql)?)
    }
}

/// A transaction on the SQLite connection.
impl Db for rusqlite::Transaction<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        sqlite_execute(self, sql, params)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        sqlite_query(self, sql, params)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.execute_batch(sql)?)
    }
}

/// Connections to PostgreSQL a server keeps open at most: callers wait for one beyond.
const MAX_PG_CONNECTIONS: usize = 16;

/// The PostgreSQL pool: idle connections, and how many are open in all.
pub(crate) struct PgPool {
    url: String,
    state: Mutex<(Vec<PgConn>, usize)>,
    freed: Condvar,
}

/// A `postgres::Client` closes its connection by blocking on a runtime of its own, which
/// panics on an async thread; the last holder of a store may well be one (a server task at
/// shutdown). The connections are closed on a thread of their own instead.
impl Drop for PgPool {
    fn drop(&mut self) {
        let conns = std::mem::take(&mut lock(&self.state).0);
        if !conns.is_empty() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(conns));
        }
    }
}

impl PgPool {
    fn take(&self) -> Result<PgConn> {
        let mut state = lock(&self.state);
        loop {
            if let Some(c) = state.0.pop() {
                if !c.client.is_closed() {
                    return Ok(c);
                }
                state.1 -= 1;
                continue;
            }
            if state.1 < MAX_PG_CONNECTIONS {
                state.1 += 1;
                drop(state);
                return PgConn::connect(&self.url).inspect_err(|_| {
                    lock(&self.state).1 -= 1;
                    self.freed.notify_one();
                });
            }
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn give(&self, conn: PgConn) {
        let mut state = lock(&self.state);
        if conn.client.is_closed() {
            state.1 -= 1;
        } else {
            state.0.push(conn);
        }
        drop(state);
        self.freed.notify_one();
    }
}

/// The backend: where connections come from.
pub(crate) enum Backend {
    Sqlite(std::sync::Arc<SqliteConn>),
    Postgres(PgPool),
}

/// The embedded database's one connection. A call takes it under the lock; a thread that
/// holds it ([`Backend::hold_if_free`]) has it out of the lock, in this thread's [`HELD`],
/// until its [`Held`] is dropped: that thread's calls use it there, other threads' calls
/// wait for it to be put back. (The standard library's mutex, not a re-entrant one: parking
/// lot's cost the server 0.1 ms of CPU a job with 50 runners contending, bench/
/// runner-throughput.sh.)
pub(crate) struct SqliteConn {
    /// The connection when no thread holds it, and how many calls wait for it.
    slot: Mutex<(Option<rusqlite::Connection>, usize)>,
    back: Condvar,
    /// Tells this store's connection from another's in [`HELD`] (a process may open several).
    id: usize,
}

thread_local! {
    /// The connection this thread holds, with its store's id.
    static HELD: RefCell<Option<(usize, rusqlite::Connection)>> = const { RefCell::new(None) };
    /// The store whose connection this thread is using under its lock (0: none), so that a
    /// call made inside another's closure is refused rather than locking twice.
    static INSIDE: Cell<usize> = const { Cell::new(0) };
}

/// This thread inside a call under the lock, until dropped (a panic too).
struct Inside(usize);

impl Inside {
    fn enter(id: usize) -> Inside {
        Inside(INSIDE.replace(id))
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.set(self.0);
    }
}

impl SqliteConn {
    pub(crate) fn new(conn: rusqlite::Connection) -> SqliteConn {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        SqliteConn {
            slot: Mutex::new((Some(conn), 0)),
            back: Condvar::new(),
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Runs `f` with the connection: this thread's hold, or the lock's, waiting while another
    /// thread holds it. A call made inside another's closure is an error, not a deadlock.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T>,
    ) -> Result<T> {
        // This thread's hold answers, or `f` comes back.
        let here = HELD.with(move |held| match held.try_borrow_mut() {
            Err(_) => Ok(Err(StoreError::Reentered)),
            Ok(mut held) => match held.as_mut() {
                Some((id, conn)) if *id == self.id => Ok(f(conn)),
                _ => Err(f),
            },
        });
        let f = match here {
            Ok(out) => return out,
            Err(f) => f,
        };
        if INSIDE.get() == self.id {
            return Err(StoreError::Reentered);
        }
        let mut slot = lock(&self.slot);
        loop {
            if let Some(conn) = slot.0.as_mut() {
                let _inside = Inside::enter(self.id);
                return f(conn);
            }
            slot.1 += 1;
            slot = self.back.wait(slot).unwrap_or_else(PoisonError::into_inner);
            slot.1 -= 1;
        }
    }

    fn hold_if_free(&self) -> Option<Held<'_>> {
        let mut slot = match self.slot.try_lock() {
            Ok(s) => s,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let conn = slot.0.take()?;
        let refused = HELD.with(|held| match held.try_borrow_mut() {
            Ok(mut held) if held.is_none() => {
                *held = Some((self.id, conn));
                None
            }
            // This thread holds a connection already (or is inside a call): not twice.
            _ => Some(conn),
        });
        if let Some(conn) = refused {
            slot.0 = Some(conn);
            return None;
        }
        Some(Held {
            conn: self,
            _this_thread: std::marker::PhantomData,
        })
    }
}

/// The embedded database's connection, held by this thread: see [`Backend::hold_if_free`].
/// Dropping it puts the connection back for other threads.
pub struct Held<'a> {
    conn: &'a SqliteConn,
    /// The connection is in this thread's [`HELD`]: the hold cannot move to another thread.
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let id = self.conn.id;
        let conn = HELD.with(|held| {
            let mut held = held.try_borrow_mut().ok()?;
            match held.take() {
                Some((i, conn)) if i == id => Some(conn),
                other => {
                    *held = other;
                    None
                }
            }
        });
        if let Some(conn) = conn {
            let mut slot = lock(&self.conn.slot);
            slot.0 = Some(conn);
            let waiting = slot.1 > 0;
            drop(slot);
            if waiting {
                self.conn.back.notify_all();
            }
        }
    }
}

impl std::fmt::Debug for Held<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Backend {
    /// A PostgreSQL backend whose first connection is `first`.
    pub(crate) fn postgres(url: &str, first: PgConn) -> Backend {
        Backend::Postgres(PgPool {
            url: url.to_owned(),
            state: Mutex::new((vec![first], 1)),
            freed: Condvar::new(),
        })
    }

    /// The SQLite connection, held by this thread until the `Held` is dropped, if no other
    /// thread holds it now; `None` for PostgreSQL, whose calls wait on the network. Store calls
    /// made meanwhile on this thread cannot wait for another's: an async caller makes short
    /// ones in place instead of handing them to a blocking thread and back.
    pub(crate) fn hold_if_free(&self) -> Option<Held<'_>> {
        match self {
            Backend::Sqlite(c) => c.hold_if_free(),
            Backend::Postgres(_) => None,
        }
    }

    /// Runs `f` with a connection.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
        match self {
            Backend::Sqlite(c) => c.with(|c| f(c)),
            Backend::Postgres(pool) => {
                let mut conn = pool.take()?;
                let out = f(&mut conn);
                pool.give(conn);
                out
            }
        }
    }

    /// Runs `f`, whose statements are each safe alone (checked writes, idempotent inserts),
    /// in a transaction where that is free and saves commits (SQLite), without one where
    /// BEGIN and COMMIT cost a round trip each (PostgreSQL).
    pub(crate) fn batch<T>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
        match self {
            Backend::Sqlite(_) => self.tx(f),
            Backend::Postgres(_) => self.with(f),
        }
    }

    /// Runs `f` in a transaction: all of it, or nothing.
    pub(crate) fn tx<T>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
        match self {
            Backend::Sqlite(c) => c.with(|c| {
                let mut tx = c.transaction()?;
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            }),
            Backend::Postgres(pool) => {
                let mut conn = pool.take()?;
                let out = conn.transaction(|t| f(t));
                pool.give(conn);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_postgres_ones_outside_strings() {
        assert_eq!(
            super::pg_sql("SELECT '?1' || ?1 FROM t WHERE a = ?12"),
            "SELECT '?1' || $1 FROM t WHERE a = $12"
        );
    }
}
