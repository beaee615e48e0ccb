//! HTML for the `/admin` and `/account` pages, escaped by construction: markup can only be
//! given as `&'static str` (text written in this crate's source), and everything else (every
//! address, domain, queue field, error) goes through [`Page::text`] or an attribute value,
//! which escape `& < > " '`. No JavaScript, no external resources (the pages send a
//! `Content-Security-Policy` that forbids scripts altogether).
//!
//! Forms are POST only and always carry the session's CSRF token ([`Page::form`]).
//! Not here: what the pages show (`admin_pages`, `account_pages`).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// `s` with `& < > " '` as character references.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}\
nav a{margin-right:1em}table{border-collapse:collapse}td,th{border:1px solid #bbb;\
padding:.2em .5em;text-align:left;vertical-align:top}pre{background:#f4f4f4;padding:.5em;overflow-wrap:anywhere;\
white-space:pre-wrap}.error{color:#a00;font-weight:bold}.ok{color:#060}form.inline{display:\
inline}input{margin:.2em}";

/// A page being written.
pub struct Page {
    out: String,
    csrf: String,
}

impl Page {
    /// A page titled `title`; `csrf` is put in every form (empty on pages without a session:
    /// the login form takes its own).
    pub fn new(title: &str, csrf: &str) -> Page {
        let mut out = String::with_capacity(4096);
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
        out.push_str(&escape(title));
        out.push_str("</title><style>");
        out.push_str(STYLE);
        out.push_str("</style></head><body>\n<h1>");
        out.push_str(&escape(title));
        out.push_str("</h1>\n");
        Page {
            out,
            csrf: csrf.to_string(),
        }
    }

    /// Markup from this crate's source.
    pub fn raw(&mut self, markup: &'static str) -> &mut Page {
        self.out.push_str(markup);
        self
    }

    /// Text, escaped.
    pub fn text(&mut self, text: &str) -> &mut Page {
        self.out.push_str(&escape(text));
        self
    }

    /// `<tag>text</tag>`, the text escaped.
    pub fn element(&mut self, tag: &'static str, text: &str) -> &mut Page {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self.text(text);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// A paragraph of class `error` or `ok`.
    pub fn message(&mut self, ok: bool, text: &str) -> &mut Page {
        self.raw(if ok {
            "<p class=\"ok\">"
        } else {
            "<p class=\"error\">"
        });
        self.text(text).raw("</p>\n")
    }

    /// A link whose target and text are escaped.
    pub fn link(&mut self, href: &str, text: &str) -> &mut Page {
        self.out.push_str("<a href=\"");
        self.out.push_str(&escape(href));
        self.out.push_str("\">");
        self.text(text);
        self.out.push_str("</a>");
        self
    }

    /// `<form method="post" action=...>` with the CSRF token; close with [`Page::end_form`].
    pub fn form(&mut self, action: &'static str, inline: bool) -> &mut Page {
        self.out.push_str("<form method=\"post\" action=\"");
        self.out.push_str(action);
        self.out.push_str(if inline {
            "\" class=\"inline\">"
        } else {
            "\">"
        });
        let csrf = self.csrf.clone();
        self.hidden("csrf", &csrf)
    }

    /// A hidden field, its value escaped.
    pub fn hidden(&mut self, name: &'static str, value: &str) -> &mut Page {
        self.out.push_str("<input type=\"hidden\" name=\"");
        self.out.push_str(name);
        self.out.push_str("\" value=\"");
        self.out.push_str(&escape(value));
        self.out.push_str("\">");
        self
    }

    /// A labelled input (`kind`: `text`, `password`, `checkbox`...).
    pub fn input(
        &mut self,
        label: &'static str,
        name: &'static str,
        kind: &'static str,
    ) -> &mut Page {
        self.out.push_str("<label>");
        self.out.push_str(label);
        self.out.push_str(" <input type=\"");
        self.out.push_str(kind);
        self.out.push_str("\" name=\"");
        self.out.push_str(name);
        self.out.push_str("\"></label> ");
        self
    }

    pub fn submit(&mut self, label: &'static str) -> &mut Page {
        self.out.push_str("<button type=\"submit\">");
        self.out.push_str(label);
        self.out.push_str("</button>");
        self
    }

    pub fn end_form(&mut self) -> &mut Page {
        self.raw("</form>\n")
    }

    /// A `<pre>` block of lines, escaped.
    pub fn lines(&mut self, lines: &[String]) -> &mut Page {
        self.raw("<pre>");
        for l in lines {
            self.text(l).raw("\n");
        }
        self.raw("</pre>\n")
    }

    /// The page as a response, with headers that forbid scripts, framing and caching.
    pub fn finish(&mut self) -> Response {
        self.out.push_str("</body></html>\n");
        html_response(std::mem::take(&mut self.out))
    }
}

/// `body` as `text/html` with the pages' security headers.
pub fn html_response(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        assert_eq!(
            escape("<script>alert(1)</script> & \"x\" 'y'"),
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot; &#39;y&#39;"
        );
        let mut p = Page::new("<b>", "tok\"en");
        p.text("<i>")
            .hidden("alias", "\"><script>")
            .link("/x?a=\"", "<u>");
        p.form("/admin/aliases/remove", true).end_form();
        let body = std::mem::take(&mut p.out);
        assert!(!body.contains("<b>") && !body.contains("<i>") && !body.contains("<u>"));
        assert!(!body.contains("\"><script>"));
        assert!(body.contains("value=\"tok&quot;en\""));
        assert!(body.contains("&lt;i&gt;"));
    }
}
