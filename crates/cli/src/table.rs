//! Column alignment as the Docker CLI draws its tables: elastic tabstops over tab-terminated
//! cells, with the settings of docker/cli's table formatter.
//!
//! docker/cli renders every `table ...` format through its own fork of Go's `text/tabwriter`
//! (`cli/command/formatter/tabwriter/tabwriter.go`), created in `Context.postFormat`
//! (`cli/command/formatter/formatter.go`) with minwidth 10, tabwidth 1, padding 3, padchar
//! `' '` and no flags. The rules that follow from those settings, which this module keeps:
//!
//! - A cell is text terminated by `\t` (or `\v`). The text after a line's last tab is not
//!   part of any column and is never padded, so lines carry no trailing spaces.
//! - A column is a run of *contiguous* lines that all have a terminated cell at that index;
//!   a line with fewer cells ends the run, and the next run is sized on its own.
//! - A column's width is the widest cell in the run plus 3, and at least 10; every cell is
//!   left-aligned and padded with spaces to that width (an empty cell too).
//! - `\f` ends a line and every column, like a flush.
//! - A cell's width is its display width as the fork measures it with `go-runewidth`
//!   (not Go's stdlib rune count): per grapheme cluster, the width of its first rune that has
//!   one, where East Asian wide and fullwidth characters count 2 and combining marks and
//!   control characters 0. Non-CJK locale rules (`RUNEWIDTH_EASTASIAN` unset) are assumed.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthChar;

/// The minimal width of a column, padding included (docker/cli's `minwidth`).
const MIN_WIDTH: usize = 10;
/// Spaces added to the widest cell of a column (docker/cli's `padding`).
const PADDING: usize = 3;

/// Aligns tab-separated `text` into columns exactly as the Docker CLI's table writer does.
/// Lines end where `text` has `\n` (or `\f`); the output keeps them, and keeps a missing final
/// newline missing.
pub fn align(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    // `\f` terminates all columns: each section between formfeeds is laid out on its own.
    let mut sections = text.split('\x0c').peekable();
    while let Some(section) = sections.next() {
        let lines: Vec<Vec<&str>> = section
            .split('\n')
            .map(|line| line.split(['\t', '\x0b']).collect())
            .collect();
        let widths: Vec<Vec<usize>> = lines
            .iter()
            .map(|cells| cells.iter().map(|c| display_width(c)).collect())
            .collect();
        let columns = column_widths(&lines, &widths);
        for (i, cells) in lines.iter().enumerate() {
            for (j, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                // The last cell of a line is not in a column and gets no padding.
                if j + 1 < cells.len() {
                    out.extend(std::iter::repeat_n(' ', columns[i][j] - widths[i][j]));
                }
            }
            // Every line but the section's last was ended by a line break.
            if i + 1 < lines.len() {
                out.push('\n');
            }
        }
        if sections.peek().is_some() {
            out.push('\n');
        }
    }
    out
}

/// The width of every terminated cell's column. Go's tabwriter finds, column by column and
/// recursively, each run of contiguous lines that has a cell in the column; because a line
/// with a cell in column `j` has one in every column before it, that run is simply the
/// longest run of adjacent lines with more than `j + 1` cells, and it is sized here without
/// recursion (a line of many tabs cannot exhaust the stack).
fn column_widths(lines: &[Vec<&str>], widths: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut columns: Vec<Vec<usize>> = lines
        .iter()
        .map(|cells| vec![0; cells.len().saturating_sub(1)])
        .collect();
    let max_columns = columns.iter().map(Vec::len).max().unwrap_or(0);
    for j in 0..max_columns {
        let mut i = 0;
        while i < lines.len() {
            if columns[i].len() <= j {
                i += 1;
                continue;
            }
            let start = i;
            let mut width = MIN_WIDTH;
            while i < lines.len() && columns[i].len() > j {
                width = width.max(widths[i][j] + PADDING);
                i += 1;
            }
            for column in &mut columns[start..i] {
                column[j] = width;
            }
        }
    }
    columns
}

/// The display width of `text` as `go-runewidth`'s `StringWidth` computes it (see the
/// module docs).
pub fn display_width(text: &str) -> usize {
    if text.is_ascii() {
        return text.bytes().filter(|b| (0x20..0x7f).contains(b)).count();
    }
    text.graphemes(true)
        .map(|cluster| {
            cluster
                .chars()
                .map(char_width)
                .find(|&w| w > 0)
                .unwrap_or(0)
        })
        .sum()
}

/// One character's width in the non-CJK rules: control characters and the few format
/// characters `go-runewidth` lists as non-printing count 0 where `unicode-width` differs.
fn char_width(c: char) -> usize {
    match c {
        '\u{ad}' | '\u{2028}' | '\u{2029}' => 0,
        _ => c.width().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    //! Expected strings are worked out by hand from the algorithm in docker/cli's
    //! `cli/command/formatter/tabwriter/tabwriter.go` with the settings of
    //! `cli/command/formatter/formatter.go` (minwidth 10, padding 3).

    use super::*;

    #[test]
    fn columns_take_widest_cell_plus_three_and_at_least_ten() {
        let text = "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\n\
                    busybox\tlatest\t1a2b3c4d5e6f\tLess than a second ago\t4.26MB\n";
        // REPOSITORY: max(10+3, 10) = 13; TAG: max(6+3, 10) = 10; IMAGE ID: 12+3 = 15;
        // CREATED: 22+3 = 25; SIZE is the trailing cell and is not padded.
        let want = "REPOSITORY   TAG       IMAGE ID       CREATED                  SIZE\n\
                    busybox      latest    1a2b3c4d5e6f   Less than a second ago   4.26MB\n";
        assert_eq!(align(text), want);
    }

    #[test]
    fn a_line_with_fewer_cells_ends_the_column_run() {
        // "a\tb" has no cell in column 1, so column 1 of the first and third lines are sized
        // separately (x+3 -> 10, yyyyyyyyyyyy+3 -> 15).
        let text = "a\tx\tend\nlonger-cell\tb\nc\tyyyyyyyyyyyy\tend\n";
        let want = "a             x         end\n\
                    longer-cell   b\n\
                    c             yyyyyyyyyyyy   end\n";
        assert_eq!(align(text), want);
    }

    #[test]
    fn a_line_without_tabs_breaks_every_column() {
        let text = "ab\tc\nplain line\nabcdefghijkl\td\n";
        let want = "ab        c\nplain line\nabcdefghijkl   d\n";
        assert_eq!(align(text), want);
    }

    #[test]
    fn empty_cells_are_padded_and_trailing_text_is_not() {
        assert_eq!(align("\tb\n"), "          b\n");
        assert_eq!(align("a\t\n"), "a         \n");
        assert_eq!(align("no tabs at all"), "no tabs at all");
        assert_eq!(align(""), "");
    }

    #[test]
    fn final_line_without_newline_still_counts_for_the_columns() {
        // 11 + 3 = 14 columns, set by the unterminated last line.
        assert_eq!(
            align("a\tb\nccccccccccc\td"),
            "a             b\nccccccccccc   d"
        );
    }

    #[test]
    fn wide_and_combining_characters_use_display_width() {
        // "日本語" is 3 runes but 6 columns wide, "コンテナ名前です" 8 runes and 16 columns:
        // the column is 16 + 3 = 19, so "日本語" gets 13 spaces (Go's stdlib tabwriter,
        // counting runes, would give it 8).
        let text = "日本語\tx\nコンテナ名前です\ty\n";
        let want = "日本語             x\nコンテナ名前です   y\n";
        assert_eq!(align(text), want);
        // "e" + U+0301 (combining acute) is one column; 🐳 is two.
        assert_eq!(display_width("e\u{301}"), 1);
        assert_eq!(display_width("🐳 whale"), 8);
        assert_eq!(display_width("ünïcödé-ñame"), 12);
        assert_eq!(display_width("tab\u{7}bell"), 7);
    }

    #[test]
    fn a_line_of_many_tabs_is_laid_out_without_recursion() {
        let text = "x\t".repeat(100_000);
        let out = align(&text);
        assert_eq!(out.len(), 100_000 * 10);
        assert!(out.starts_with("x         x         "));
    }

    #[test]
    fn formfeed_ends_all_columns() {
        let text = "a\tb\n\x0cccccccccccccccc\td\n";
        assert_eq!(align(text), "a         b\n\nccccccccccccccc   d\n");
    }
}
