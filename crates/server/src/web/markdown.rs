//! A job's summary (`GITHUB_STEP_SUMMARY`) as HTML, rendered safely: Markdown with GitHub's
//! tables, strikethrough and task lists, but raw HTML shown as text and links or images
//! only to `http`, `https`, `mailto` or a relative address (no `javascript:` or `data:`).

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

/// Whether `url` may be a link's or an image's address.
fn safe(url: &str) -> bool {
    let url = url.trim();
    let scheme_end = url.find(':');
    let path_start = url.find(['/', '?', '#']);
    match (scheme_end, path_start) {
        // No scheme at all, or the colon comes after the path starts: relative.
        (None, _) => true,
        (Some(c), Some(p)) if p < c => true,
        (Some(c), _) => {
            let scheme = url[..c].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
    }
}

fn defused(url: CowStr<'_>) -> CowStr<'_> {
    if safe(&url) { url } else { CowStr::from("#") }
}

/// The summary's HTML.
pub(crate) fn render(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: defused(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: defused(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_rendered_with_tables() {
        let out = render("## Coverage\n\n| file | % |\n|---|---|\n| app.py | 91 |\n\n- [x] lint\n");
        assert!(out.contains("<h2>Coverage</h2>"), "{out}");
        assert!(out.contains("<td>app.py</td>"), "{out}");
        assert!(out.contains("checkbox"), "{out}");
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        let out = render("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(2)> there\n");
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
    }

    #[test]
    fn only_harmless_addresses_are_kept() {
        let out = render(
            "[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) [c](https://example.com/x) \
             [d](/runs/3) [e](data:text/html,hi) ![f](data:image/png;base64,AAA) [g](a/b:c)",
        );
        assert!(!out.to_lowercase().contains("javascript:"), "{out}");
        assert!(!out.contains("data:"), "{out}");
        assert!(out.contains("href=\"https://example.com/x\""), "{out}");
        assert!(out.contains("href=\"/runs/3\""), "{out}");
        assert!(out.contains("href=\"a/b:c\""), "{out}");
        assert_eq!(out.matches("href=\"#\"").count(), 3, "{out}");
    }
}
