//! Exports with Chinese headers (English with [`Lang::En`]): the report with its breakdown,
//! and each ledger, as CSV (UTF-8 with a byte-order mark, so that Excel and WPS read the
//! Chinese right) or XLSX.
//!
//! Writers take a `Write` (CSV) or a path (XLSX: written to a file, then streamed from it).
//! Ledgers are read page by page (keyset on org unit and change sequence) and written as they
//! come, so a county's ledger never sits in memory; XLSX sheets use rust_xlsxwriter's constant
//! memory mode.

use std::io::Write;
use std::path::Path;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use crate::auth::audit::AuditEntry;
use crate::db::records::{backend_of, select_json_sql, JsonRow, RecordRow};
use crate::db::stmt::Stmt;
use crate::db::DbConn;
use crate::domain::entities::{Entity, FieldType};
use crate::domain::resident_id::ResidentId;
use crate::error::{AppError, AppResult};
use crate::orgunit::subtree_range;
use crate::report::counts::COUNTS;
use crate::report::indicators::{Direction, Indicator, Missed};
use crate::report::lang::Lang;
use crate::report::report::{Breakdown, BreakdownRow, Report};

/// UTF-8 byte-order mark.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";
/// What a not-applicable indicator (zero denominator) shows.
pub const NOT_APPLICABLE: &str = "不适用";

fn not_applicable(lang: Lang) -> Cell {
    Cell::Text(lang.pick(NOT_APPLICABLE, "n/a").into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Xlsx,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "csv" => Some(ExportFormat::Csv),
            "xlsx" => Some(ExportFormat::Xlsx),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Xlsx => "xlsx",
        }
    }
}

/// A cell: text or a number.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Number(f64),
}

impl Cell {
    /// The CSV text. Text a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, CR
    /// first: a worker's note could be one) gets a leading apostrophe, the usual guard against
    /// CSV injection; XLSX cells are written as strings and need none.
    fn csv(&self) -> String {
        match self {
            Cell::Text(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
            Cell::Text(s) => s.clone(),
            Cell::Number(n) => n.to_string(),
        }
    }
}

fn xlsx_err(e: XlsxError) -> AppError {
    AppError::Internal(format!("xlsx: {e}"))
}

fn io_err(e: std::io::Error) -> AppError {
    AppError::Internal(format!("export write: {e}"))
}

/// Headers of the breakdown table.
pub fn breakdown_headers(lang: Lang) -> Vec<String> {
    let mut h = vec![
        lang.pick("单位代码", "org unit code").to_string(),
        lang.pick("单位名称", "org unit name").into(),
        lang.pick("统计期", "period").into(),
    ];
    for i in Indicator::ALL {
        let (label, unit) = (lang.indicator_full(i), i.unit());
        h.push(match (unit.is_empty(), lang) {
            (true, _) => label,
            (false, Lang::Zh) => format!("{label}({unit})"),
            (false, Lang::En) => format!("{label} ({unit})"),
        });
    }
    h.extend(COUNTS.iter().map(|d| lang.pick(d.zh, d.en).to_string()));
    h
}

fn breakdown_row(r: &BreakdownRow, period: &str, lang: Lang) -> Vec<Cell> {
    let mut row = vec![
        Cell::Text(r.org_unit.code.clone()),
        Cell::Text(r.org_unit.name.clone()),
        Cell::Text(period.to_string()),
    ];
    for i in &r.indicators {
        row.push(match i.value {
            Some(v) => Cell::Number(v),
            None => not_applicable(lang),
        });
    }
    for d in COUNTS {
        row.push(Cell::Number(
            r.counts.get(d.key).copied().unwrap_or(0) as f64
        ));
    }
    row
}

/// The breakdown rows then the total (合计, `total` in English) row.
pub fn breakdown_rows(b: &Breakdown, lang: Lang) -> Vec<Vec<Cell>> {
    let mut rows: Vec<Vec<Cell>> = b
        .rows
        .iter()
        .map(|r| breakdown_row(r, &b.period.label, lang))
        .collect();
    let mut total = breakdown_row(&b.total, &b.period.label, lang);
    if lang == Lang::En {
        total[1] = Cell::Text("total".into());
    }
    rows.push(total);
    rows
}

/// The report's indicators as a table (XLSX sheet 指标).
fn indicator_table(r: &Report, lang: Lang) -> (Vec<String>, Vec<Vec<Cell>>) {
    let headers = [
        ("指标", "indicator"),
        ("单位", "unit"),
        ("分子", "numerator"),
        ("分母", "denominator"),
        ("数值", "value"),
        ("目标方向", "target direction"),
        ("目标值", "target"),
        ("是否达标", "met"),
        ("差距", "gap"),
        ("目标上限", "target ceiling"),
        ("未达方向", "side missed"),
    ]
    .map(|(zh, en)| lang.pick(zh, en).to_string())
    .to_vec();
    let rows = r
        .indicators
        .iter()
        .map(|i| {
            let na = || not_applicable(lang);
            let empty = || Cell::Text(String::new());
            vec![
                Cell::Text(lang.indicator_full(i.indicator)),
                Cell::Text(i.unit.to_string()),
                Cell::Number(i.numerator as f64),
                Cell::Number(i.denominator as f64),
                i.value.map(Cell::Number).unwrap_or_else(na),
                i.target
                    .map(|t| {
                        Cell::Text(
                            match t.direction {
                                Direction::AtLeast => lang.pick("不低于", "at least"),
                                Direction::AtMost => lang.pick("不高于", "at most"),
                                Direction::Between => lang.pick("介于", "between"),
                            }
                            .into(),
                        )
                    })
                    .unwrap_or_else(empty),
                i.target
                    .map(|t| Cell::Number(t.value))
                    .unwrap_or_else(empty),
                match (i.target, i.attainment) {
                    (None, _) => empty(),
                    (Some(_), None) => na(),
                    (Some(_), Some(a)) => Cell::Text(
                        if a.met {
                            lang.pick("达标", "met")
                        } else {
                            lang.pick("未达标", "missed")
                        }
                        .into(),
                    ),
                },
                i.attainment
                    .map(|a| Cell::Number(a.gap))
                    .unwrap_or_else(empty),
                i.target
                    .and_then(|t| t.upper)
                    .map(Cell::Number)
                    .unwrap_or_else(empty),
                match i.attainment.and_then(|a| a.missed) {
                    None => empty(),
                    Some(Missed::BelowFloor) => {
                        Cell::Text(lang.pick("低于下限", "below floor").into())
                    }
                    Some(Missed::AboveCeiling) => {
                        Cell::Text(lang.pick("高于上限", "above ceiling").into())
                    }
                },
            ]
        })
        .collect();
    (headers, rows)
}

fn write_csv_rows(out: &mut impl Write, headers: &[String], rows: &[Vec<Cell>]) -> AppResult<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(headers)
        .map_err(|e| AppError::Internal(format!("csv: {e}")))?;
    for r in rows {
        w.write_record(r.iter().map(Cell::csv))
            .map_err(|e| AppError::Internal(format!("csv: {e}")))?;
    }
    w.flush().map_err(io_err)
}

/// The report with its breakdown as one CSV table: a row per child unit, then 合计.
pub fn report_csv(out: &mut impl Write, b: &Breakdown, lang: Lang) -> AppResult<()> {
    out.write_all(BOM).map_err(io_err)?;
    write_csv_rows(out, &breakdown_headers(lang), &breakdown_rows(b, lang))
}

fn write_sheet(ws: &mut Worksheet, headers: &[String], rows: &[Vec<Cell>]) -> AppResult<()> {
    let bold = Format::new().set_bold();
    for (c, h) in headers.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, h, &bold)
            .map_err(xlsx_err)?;
    }
    for (r, row) in rows.iter().enumerate() {
        write_cells(ws, r as u32 + 1, row)?;
    }
    Ok(())
}

fn write_cells(ws: &mut Worksheet, r: u32, row: &[Cell]) -> AppResult<()> {
    for (c, cell) in row.iter().enumerate() {
        match cell {
            Cell::Text(s) if s.is_empty() => {}
            Cell::Text(s) => {
                ws.write_string(r, c as u16, s).map_err(xlsx_err)?;
            }
            Cell::Number(n) => {
                ws.write_number(r, c as u16, *n).map_err(xlsx_err)?;
            }
        }
    }
    Ok(())
}

/// The report as XLSX: sheet 分单位报表 (`breakdown`: the breakdown and 合计), sheet 指标
/// (`indicators`: the unit's indicators with targets).
pub fn report_xlsx(path: &Path, report: &Report, b: &Breakdown, lang: Lang) -> AppResult<()> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(lang.pick("分单位报表", "breakdown"))
        .map_err(xlsx_err)?;
    write_sheet(ws, &breakdown_headers(lang), &breakdown_rows(b, lang))?;
    let ws = wb.add_worksheet();
    ws.set_name(lang.pick("指标", "indicators"))
        .map_err(xlsx_err)?;
    let (h, rows) = indicator_table(report, lang);
    write_sheet(ws, &h, &rows)?;
    wb.save(path).map_err(xlsx_err)
}

/// Headers of a ledger export.
pub fn ledger_headers(entity: Entity, lang: Lang) -> Vec<String> {
    let mut h = vec![
        lang.pick("单位代码", "org unit code").to_string(),
        lang.pick("记录ID", "record id").into(),
    ];
    h.extend(
        entity
            .def()
            .fields
            .iter()
            .map(|f| lang.pick(f.zh, f.en).to_string()),
    );
    h
}

fn ledger_row(r: &RecordRow, lang: Lang) -> Vec<Cell> {
    let mut row = vec![Cell::Text(r.org_unit.clone()), Cell::Text(r.id.clone())];
    for f in r.entity.def().fields {
        let v = r.fields.get(f.name);
        row.push(match (f.ty, v) {
            (_, None) | (_, Some(serde_json::Value::Null)) => Cell::Text(String::new()),
            (FieldType::Bool, Some(v)) => Cell::Text(
                if v.as_bool() == Some(true) || v.as_i64() == Some(1) {
                    lang.pick("是", "yes")
                } else {
                    lang.pick("否", "no")
                }
                .into(),
            ),
            (FieldType::Int { .. }, Some(v)) => v
                .as_f64()
                .map(Cell::Number)
                .unwrap_or(Cell::Text(v.to_string())),
            (FieldType::Enum(choices), Some(v)) => {
                let s = v.as_str().unwrap_or_default();
                Cell::Text(
                    choices
                        .iter()
                        .find(|c| c.value == s)
                        .map_or(s, |c| lang.pick(c.zh, c.en))
                        .to_string(),
                )
            }
            (FieldType::ResidentId, Some(v)) => {
                Cell::Text(ResidentId::mask(v.as_str().unwrap_or_default()))
            }
            (_, Some(v)) => Cell::Text(
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            ),
        });
    }
    row
}

const PAGE: i64 = 1000;

/// Calls `each` with every live record of `entity` under `code`, in org unit then change order,
/// reading a page at a time. Returns the number of records.
pub fn for_each_record(
    conn: &mut DbConn,
    entity: Entity,
    code: &str,
    mut each: impl FnMut(&RecordRow) -> AppResult<()>,
) -> AppResult<u64> {
    let base = select_json_sql(backend_of(conn), entity);
    // One text per record type and backend: kept prepared.
    let sql = format!(
        "SELECT q.change_seq, q.j FROM ({base} WHERE org_unit < ? AND NOT deleted \
         AND (org_unit > ? OR (org_unit = ? AND change_seq > ?)) \
         ORDER BY org_unit, change_seq LIMIT {PAGE}) q"
    );
    let (lo, hi) = subtree_range(code);
    // Start just before the range: the first key is (lo, seq > -1).
    let mut after = (lo, -1i64);
    let mut n = 0u64;
    loop {
        let rows: Vec<JsonRow> = Stmt::new(sql.as_str())
            .text(&hi)
            .text(&after.0)
            .text(&after.0)
            .int(after.1)
            .load_on(conn)?;
        let full = rows.len() as i64 == PAGE;
        for r in rows {
            let rec = RecordRow::from_json(&r.j)?;
            after = (rec.org_unit.clone(), rec.change_seq);
            each(&rec)?;
            n += 1;
        }
        if !full {
            return Ok(n);
        }
    }
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How many records a ledger export of `entity` under `code` holds: the live records of the
/// subtree, those [`for_each_record`] reads.
fn count_records(conn: &mut DbConn, entity: Entity, code: &str) -> AppResult<i64> {
    let table = entity.def().table;
    let (lo, hi) = subtree_range(code);
    // One text per record type: a bounded set, so kept prepared.
    let row: CountRow = Stmt::new(format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE org_unit >= ? AND org_unit < ? AND NOT deleted"
    ))
    .text(&lo)
    .text(&hi)
    .first_on(conn)?;
    Ok(row.n)
}

/// The audit entry of a ledger export, written before the file: what leaves the server (the
/// record type, the org unit whose subtree, the filter, the number of rows, counted in the
/// transaction that writes the entry; the export reads the same rows unless a sync lands in
/// between). The caller says who.
pub fn ledger_export_audit(
    conn: &mut DbConn,
    entity: Entity,
    code: &str,
    format: ExportFormat,
    lang: Lang,
) -> AppResult<AuditEntry> {
    let rows = count_records(conn, entity, code)?;
    Ok(AuditEntry {
        actor_user: None,
        actor_role: None,
        action: "ledger_export",
        target_kind: Some("org_unit".into()),
        target_ids: vec![code.to_string()],
        request_id: String::new(),
        detail: Some(serde_json::json!({
            "entity": entity.name(),
            "org_unit": code,
            "filter": "live records of the org unit's subtree",
            "rows": rows,
            "format": format.ext(),
            "lang": lang,
        })),
    })
}

/// A ledger as CSV, written to `out` as it is read.
pub fn ledger_csv(
    conn: &mut DbConn,
    out: &mut impl Write,
    entity: Entity,
    code: &str,
    lang: Lang,
) -> AppResult<u64> {
    out.write_all(BOM).map_err(io_err)?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(ledger_headers(entity, lang))
        .map_err(|e| AppError::Internal(format!("csv: {e}")))?;
    let n = for_each_record(conn, entity, code, |r| {
        w.write_record(ledger_row(r, lang).iter().map(Cell::csv))
            .map_err(|e| AppError::Internal(format!("csv: {e}")))
    })?;
    w.flush().map_err(io_err)?;
    Ok(n)
}

/// A ledger as XLSX at `path`, one constant-memory sheet.
pub fn ledger_xlsx(
    conn: &mut DbConn,
    path: &Path,
    entity: Entity,
    code: &str,
    lang: Lang,
) -> AppResult<u64> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet_with_constant_memory();
    let def = entity.def();
    ws.set_name(lang.pick(def.zh, def.en)).map_err(xlsx_err)?;
    let headers = ledger_headers(entity, lang);
    let bold = Format::new().set_bold();
    for (c, h) in headers.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, h, &bold)
            .map_err(xlsx_err)?;
    }
    let mut r = 0u32;
    let n = for_each_record(conn, entity, code, |rec| {
        r += 1;
        if r > 1_048_575 {
            return Err(AppError::validation(
                "too_many_rows",
                "more rows than a sheet holds; export a smaller unit or use CSV",
            ));
        }
        write_cells(ws, r, &ledger_row(rec, lang))
    })?;
    wb.save(path).map_err(xlsx_err)?;
    Ok(n)
}

/// Writes the report of `code` for `period` with its breakdown to `out` (the CLI's
/// `fieldsync report`): the same file the export route streams, for any org unit.
pub fn write_report_file(
    db: &crate::db::Db,
    code: &str,
    period: &crate::report::report::Period,
    format: ExportFormat,
    out: &Path,
    lang: Lang,
    rules: crate::report::indicators::Rules,
) -> AppResult<()> {
    use crate::report::report as rep;
    let (report, b) = db.read_split(|c, second| {
        let unit = crate::orgunit::get(c, code)?.ok_or(AppError::NotFound)?;
        rep::report_and_breakdown(c, second, &unit, period, None, None, rules)
    })?;
    match format {
        ExportFormat::Csv => {
            let f = std::fs::File::create(out).map_err(io_err)?;
            let mut w = std::io::BufWriter::new(f);
            report_csv(&mut w, &b, lang)?;
            w.flush().map_err(io_err)
        }
        ExportFormat::Xlsx => report_xlsx(out, &report, &b, lang),
    }
}

/// Writes the ledger of `entity` under `code` to `out` (the CLI's `fieldsync report
/// --ledger`): the file the ledger export route streams. Returns the number of records.
pub fn write_ledger_file(
    db: &crate::db::Db,
    entity: Entity,
    code: &str,
    format: ExportFormat,
    out: &Path,
    lang: Lang,
) -> AppResult<u64> {
    db.write(|c| {
        crate::orgunit::get(c, code)?.ok_or(AppError::NotFound)?;
        let entry = ledger_export_audit(c, entity, code, format, lang)?;
        crate::auth::audit::record(
            c,
            AuditEntry {
                actor_role: Some("cli".into()),
                request_id: "cli".into(),
                ..entry
            },
        )
    })?;
    db.read(|c| match format {
        ExportFormat::Csv => {
            let f = std::fs::File::create(out).map_err(io_err)?;
            let mut w = std::io::BufWriter::new(f);
            let n = ledger_csv(c, &mut w, entity, code, lang)?;
            w.flush().map_err(io_err)?;
            Ok(n)
        }
        ExportFormat::Xlsx => ledger_xlsx(c, out, entity, code, lang),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_never_start_a_formula() {
        assert_eq!(Cell::Text("=1+2".into()).csv(), "'=1+2");
        assert_eq!(Cell::Text("@SUM(A1)".into()).csv(), "'@SUM(A1)");
        assert_eq!(Cell::Text("王芳".into()).csv(), "王芳");
        assert_eq!(Cell::Number(-13.0).csv(), "-13");
    }

    #[test]
    fn headers_are_chinese_and_complete() {
        let h = breakdown_headers(Lang::Zh);
        assert_eq!(h.len(), 3 + Indicator::ALL.len() + COUNTS.len());
        assert!(h.contains(&"人口出生率(‰)".to_string()));
        assert!(h.contains(&"长效避孕及时率(%)".to_string()));
        assert!(h.contains(&"独男户".to_string()));
        assert!(h.contains(&"出生人口性别比".to_string()));
        assert!(h.contains(&"住院分娩率(%)".to_string()));
        assert_eq!(ledger_headers(Entity::Person, Lang::Zh)[2], "所属户");
        let h = breakdown_headers(Lang::En);
        assert!(h.contains(&"crude birth rate (‰)".to_string()));
        assert_eq!(ledger_headers(Entity::Person, Lang::En)[2], "household");
    }
}
