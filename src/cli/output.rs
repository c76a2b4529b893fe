//! What commands print on stdout: lines that report a closed pipe as an error (instead of `println!`'s
//! panic), and aligned tables whose long cells are cut with an ellipsis (`--json` has them whole).

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};

/// `println!` that returns the write's `io::Result`, so `| head` ends the command quietly (see
/// `errors::is_broken_pipe`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// A column: its header, the widest a cell may be (longer text is cut with `…`), and whether numbers
/// align right.
pub struct Column {
    pub header: &'static str,
    pub max_width: u16,
    pub right: bool,
}

impl Column {
    pub const fn left(header: &'static str, max_width: u16) -> Self {
        Self { header, max_width, right: false }
    }

    pub const fn right(header: &'static str) -> Self {
        Self { header, max_width: 12, right: true }
    }
}

/// A borderless table with two spaces between columns, every cell cut to its column's width, lines
/// without trailing blanks.
pub fn table(columns: &[Column], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(columns.iter().map(|c| c.header));
    for row in rows {
        table.add_row(row.iter().zip(columns).map(|(cell, column)| truncate(cell, column.max_width.into())));
    }
    for (index, column) in columns.iter().enumerate() {
        if let Some(table_column) = table.column_mut(index) {
            table_column.set_padding((0, 2));
            if column.right {
                table_column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    table.lines().map(|line| line.trim_end().to_string()).collect::<Vec<_>>().join("\n")
}

/// The text cut to at most `max` characters, the last one `…` when cut; newlines become spaces so a
/// cell stays on one line.
pub fn truncate(text: &str, max: usize) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `-` for a missing value.
pub fn dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_with_an_ellipsis_and_short_ones_kept() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("a much longer text", 10), "a much lo…");
        assert_eq!(truncate("two\nlines", 20), "two lines");
    }

    #[test]
    fn columns_line_up_whatever_the_cell_lengths() {
        let columns = [Column::left("NAME", 8), Column::right("COUNT")];
        let rows = vec![vec!["a".into(), "1".into()], vec!["a very long name".into(), "12345".into()]];
        let text = table(&columns, rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // The count column ends at the same place on every line.
        let ends: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(ends.iter().all(|&e| e == ends[0]), "{text}");
        assert!(lines[2].contains("a very …"), "{text}");
    }
}
