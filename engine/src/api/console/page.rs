//! The console's HTML: one layout, and the few pieces every view shares
//! (tables with sortable headers, pagers, filters, a bar chart in SVG).
//! Rendered on the server with maud, which escapes every value it is
//! given; the only script is `console.js`, embedded like the stylesheet.

use maud::{DOCTYPE, Markup, html};

use super::session::{Session, Viewer};

pub const STYLESHEET: &str = include_str!("assets/console.css");
pub const SCRIPT: &str = include_str!("assets/console.js");

/// The admin's sections, in the order of the navigation bar.
const ADMIN_NAV: &[(&str, &str)] = &[
    ("/console", "Compliance"),
    ("/console/devices", "Devices"),
    ("/console/rollouts", "Rollouts"),
    ("/console/exposure", "Exposure"),
    ("/console/software", "Software"),
    ("/console/catalog", "Catalog"),
    ("/console/installed", "Installed"),
    ("/console/review", "Review queue"),
    ("/console/status", "Engine status"),
    ("/console/audit", "Audit log"),
];

/// A whole page: `title`, the navigation for `session`'s viewer (none on
/// the sign-in page), a flash message, and `body`.
pub fn layout(title: &str, session: Option<&Session>, current: &str, flash: Option<&Flash>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · patchward" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "patchward" }
                    @if let Some(session) = session {
                        nav {
                            @match &session.viewer {
                                Viewer::Admin => {
                                    @for (href, label) in ADMIN_NAV {
                                        a href=(href) class=[(*href == current).then_some("current")] { (label) }
                                    }
                                }
                                Viewer::User { device } => {
                                    a.current href="/portal" { "My device: " (device) }
                                }
                            }
                        }
                        form.signout method="post" action="/signout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(flash) = flash {
                        p class=(flash.class()) role="status" { (flash.text) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A one-line message above a page's body.
pub struct Flash {
    pub text: String,
    pub error: bool,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash { text: text.into(), error: false }
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash { text: text.into(), error: true }
    }

    fn class(&self) -> &'static str {
        if self.error { "flash error" } else { "flash ok" }
    }
}

/// A form that posts to `action` with the session's CSRF token.
pub fn post_form(session: &Session, action: &str, class: &str, fields: Markup, button: &str) -> Markup {
    html! {
        form method="post" action=(action) class=(class) {
            input type="hidden" name="csrf" value=(session.csrf);
            (fields)
            button type="submit" { (button) }
        }
    }
}

/// The query string of `pairs`, without the empty ones.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let encoded: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
        .collect();
    if encoded.is_empty() { String::new() } else { format!("?{}", encoded.join("&")) }
}

/// A `<select>` of `options` (an empty first option means "any").
/// A select that always has one of `options` chosen (no "any").
pub fn choice(name: &str, label: &str, options: &[String], chosen: &str) -> Markup {
    html! {
        label {
            (label) " "
            select name=(name) {
                @for option in options {
                    option value=(option) selected[option == chosen] { (option) }
                }
            }
        }
    }
}

pub fn select(name: &str, label: &str, options: &[String], chosen: &str) -> Markup {
    html! {
        label {
            (label) " "
            select name=(name) {
                option value="" { "any" }
                @for option in options {
                    option value=(option) selected[option == chosen] { (option) }
                }
            }
        }
    }
}

/// A horizontal stacked bar of `parts` (label, count, CSS class), in SVG,
/// with its figures written beside it for readers and tests.
pub fn stacked_bar(parts: &[(&str, usize, &str)]) -> Markup {
    let total: usize = parts.iter().map(|(_, n, _)| n).sum();
    let mut x = 0.0;
    let mut bars = Vec::new();
    for (label, count, class) in parts {
        let width = if total == 0 { 0.0 } else { *count as f64 * 100.0 / total as f64 };
        bars.push((*label, *count, *class, x, width));
        x += width;
    }
    html! {
        svg.bar viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label="compliance chart" {
            @for (label, count, class, x, width) in &bars {
                rect class=(class) x=(format!("{x:.3}")) y="0" width=(format!("{width:.3}")) height="8" {
                    title { (label) ": " (count) }
                }
            }
        }
        ul.legend {
            @for (label, count, class) in parts {
                li { span class=(format!("swatch {class}")) {} (label) ": " strong data-figure=(label) { (count) } }
            }
        }
    }
}

/// A line chart of percentages over time, in SVG: the compliance trend.
pub fn trend_chart(points: &[(jiff::Timestamp, f64)]) -> Markup {
    if points.len() < 2 {
        return html! { p.muted { "The trend appears once the engine has planned in two different hours." } };
    }
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let span = last.duration_since(first).as_secs_f64().max(1.0);
    let path: Vec<String> = points
        .iter()
        .map(|(at, percent)| {
            let x = at.duration_since(first).as_secs_f64() / span * 100.0;
            format!("{x:.2},{:.2}", 40.0 - percent.clamp(0.0, 100.0) * 0.4)
        })
        .collect();
    html! {
        svg.trend viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label="compliance trend" {
            polyline points=(path.join(" ")) {}
        }
        p.muted { (first.strftime("%Y-%m-%d")) " – " (last.strftime("%Y-%m-%d")) ", compliant devices in percent" }
    }
}

/// A YAML document to commit, with a button that copies it.
pub fn yaml_to_commit(path: &str, yaml: &str) -> Markup {
    html! {
        figure.yaml {
            figcaption { "Commit as " code { (path) } " in the policy repository:" }
            pre { code { (yaml) } }
            button type="button" class="copy" { "Copy" }
        }
    }
}

/// An instant as admins read it: UTC, to the second.
/// An instant as people read it, to the minute: `2026-12-05 17:03 UTC`.
pub fn when(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// A size as people read it: `512 B`, `1.5 KiB`, `1.5 MiB`, `2.0 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What an empty table shows instead of bare headers.
pub fn empty_state(why: &str) -> Markup {
    html! { p.empty { "Nothing applies: " (why) "." } }
}

/// `1 rollout`, `2 rollouts`: a count with its noun, singular or plural.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

pub fn when_opt(at: Option<jiff::Timestamp>) -> String {
    at.map(when).unwrap_or_else(|| "—".into())
}
