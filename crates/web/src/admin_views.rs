//! The bodies of the `/admin` pages: tables and forms written with [`Page`] (escaped by
//! construction), from the data the console answered. Pure: no I/O but the console calls of
//! the domain page (keys, records, the DNS check when asked).

use crate::console::{Console, Dashboard, Queued, Who};
use crate::html::Page;

pub fn dashboard(p: &mut Page, d: &Dashboard) {
    p.raw("<h2>Queue</h2>\n<table id=\"queue-states\"><tr><th>Messages</th><td>")
        .text(&d.queued_messages.to_string())
        .raw("</td></tr>\n");
    for (state, n) in &d.queue_states {
        p.raw("<tr>")
            .element("th", &format!("recipients {state}"))
            .element("td", &n.to_string())
            .raw("</tr>\n");
    }
    p.raw("</table>\n<h2>")
        .text(&format!("Deliveries and refusals in {}", d.window))
        .raw("</h2>\n<table id=\"counts\">");
    for (what, n) in &d.counts {
        p.raw("<tr>")
            .element("th", what)
            .element("td", &n.to_string())
            .raw("</tr>\n");
    }
    p.raw("</table>\n<h2>Recent errors</h2>\n");
    if d.recent_errors.is_empty() {
        p.raw("<p>None in the queue.</p>\n");
    } else {
        p.lines(&d.recent_errors);
    }
}

pub fn domains(p: &mut Page, domains: &[String]) {
    p.raw("<table id=\"domains\"><tr><th>Domain</th><th></th></tr>\n");
    for d in domains {
        p.raw("<tr><td>")
            .link(&format!("/admin/domain?name={}", query_value(d)), d)
            .raw("</td><td>");
        p.form("/admin/domains/remove", true)
            .hidden("domain", d)
            .submit("Remove")
            .end_form();
        p.raw("</td></tr>\n");
    }
    p.raw("</table>\n<h2>Add a domain</h2>\n");
    p.form("/admin/domains/add", false)
        .input("Domain", "domain", "text")
        .submit("Add domain")
        .end_form();
}

/// The domain page: its DKIM keys, its records, and with `check` the `dns-check` report.
pub fn domain(p: &mut Page, c: &dyn Console, name: &str, check: bool) -> Result<(), String> {
    p.element("h2", name);
    let keys = c.dkim_keys(name)?;
    p.raw("<h3>DKIM keys</h3>\n");
    p.lines(&keys);
    p.raw("<h3>DNS records (as <code>mailroom dns-records</code> prints them)</h3>\n");
    p.raw("<div id=\"records\">");
    p.lines(&c.dns_records(name)?);
    p.raw("</div>\n");
    p.form("/admin/domain/check", false)
        .hidden("name", name)
        .submit("Check DNS")
        .end_form();
    if check {
        p.raw("<h3>DNS check</h3>\n<div id=\"check\">");
        match c.dns_check(name) {
            Ok(lines) => p.lines(&lines),
            Err(e) => p.message(false, &e),
        };
        p.raw("</div>\n");
    }
    Ok(())
}

pub fn accounts(p: &mut Page, accounts: &[Who]) {
    p.raw("<table id=\"accounts\"><tr><th>Account</th><th>Admin</th><th>New password</th><th></th></tr>\n");
    for a in accounts {
        p.raw("<tr>")
            .element("td", &a.address)
            .element("td", if a.admin { "yes" } else { "" })
            .raw("<td>");
        p.form("/admin/accounts/password", true)
            .hidden("address", &a.address)
            .input("", "password", "password")
            .submit("Set")
            .end_form();
        p.raw("</td><td>");
        p.form("/admin/accounts/remove", true)
            .hidden("address", &a.address)
            .submit("Remove")
            .end_form();
        p.raw("</td></tr>\n");
    }
    p.raw("</table>\n<h2>Add an account</h2>\n");
    p.form("/admin/accounts/add", false)
        .input("Address", "address", "text")
        .input("Password", "password", "password")
        .input("Admin", "admin", "checkbox")
        .submit("Add account")
        .end_form();
}

pub fn aliases(p: &mut Page, aliases: &[(String, Vec<String>)]) {
    p.raw("<table id=\"aliases\"><tr><th>Alias</th><th>Delivers to</th><th></th></tr>\n");
    for (alias, targets) in aliases {
        p.raw("<tr>")
            .element("td", alias)
            .element("td", &targets.join(", "))
            .raw("<td>");
        p.form("/admin/aliases/remove", true)
            .hidden("alias", alias)
            .submit("Remove")
            .end_form();
        p.raw("</td></tr>\n");
    }
    p.raw("</table>\n<h2>Add an alias</h2>\n");
    p.form("/admin/aliases/add", false)
        .input("Alias", "alias", "text")
        .input("Targets (comma separated)", "targets", "text")
        .submit("Add alias")
        .end_form();
}

pub fn queue(p: &mut Page, queue: &[Queued]) {
    p.raw("<p id=\"queue-count\">")
        .text(&format!("{} message(s) in the queue", queue.len()))
        .raw("</p>\n");
    p.form("/admin/queue/flush", false)
        .submit("Flush the whole queue")
        .end_form();
    p.raw("<table id=\"queue\"><tr><th>Id</th><th>Age</th><th>Size</th><th>From</th><th>Recipients</th><th></th></tr>\n");
    for m in queue {
        p.raw("<tr><td>")
            .link(&format!("/admin/message?id={}", query_value(&m.id)), &m.id)
            .raw("</td>")
            .element("td", &m.age)
            .element("td", &m.size.to_string())
            .element("td", &format!("<{}>", m.sender))
            .raw("<td>");
        for (address, state, attempts, last) in &m.recipients {
            let mut line = format!("<{address}> {state} attempts={attempts}");
            if !last.is_empty() {
                line.push_str(" last: ");
                line.push_str(last);
            }
            p.text(&line).raw("<br>");
        }
        p.raw("</td><td>");
        for (action, label) in [
            ("/admin/queue/flush", "Flush"),
            ("/admin/queue/bounce", "Bounce"),
            ("/admin/queue/remove", "Remove"),
        ] {
            p.form(action, true)
                .hidden("id", &m.id)
                .submit(label)
                .end_form();
        }
        p.raw("</td></tr>\n");
    }
    p.raw("</table>\n");
}

pub fn message(p: &mut Page, id: &str, text: &str) {
    p.element("h2", id);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    p.lines(&lines);
}

/// `value` percent-encoded for a query string (then escaped as an attribute by `link`).
fn query_value(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query_value("a b&c=<d>"), "a%20b%26c%3D%3Cd%3E");
        assert_eq!(query_value("example.org"), "example.org");
    }
}
