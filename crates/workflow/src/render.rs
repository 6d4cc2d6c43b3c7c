//! Diagnostics as text: `file:line:col`, the source line and a caret, what is wrong and what
//! was expected. Rendering is done by miette with a fixed width so the output is stable.

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report,
};

use crate::diag::{Diagnostic, Severity};

/// Renders one diagnostic of `file` (whose text is `src`). `color` adds ANSI colours.
pub fn render(d: &Diagnostic, file: &str, src: &str, color: bool) -> String {
    let mut md = MietteDiagnostic::new(d.message.clone()).with_severity(match d.severity {
        Severity::Error => miette::Severity::Error,
        Severity::Warning => miette::Severity::Warning,
    });
    let offset = d.span.start.offset.min(src.len());
    let len = d
        .span
        .len()
        .min(src.len().saturating_sub(offset))
        .max(usize::from(offset < src.len()));
    md = md.with_label(LabeledSpan::new(d.label.clone(), offset, len));
    if let Some(help) = &d.help {
        md = md.with_help(help.clone());
    }
    let report = Report::new(md).with_source_code(NamedSource::new(file, src.to_owned()));
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    if handler.render_report(&mut out, report.as_ref()).is_err() {
        out = format!(
            "{file}:{}:{}: {}\n",
            d.span.start.line, d.span.start.col, d.message
        );
    }
    out
}
