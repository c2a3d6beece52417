//! Headless Chromium (Debian's `chromium` package, installed by
//! `scripts/setup-browser`) for the tests that look at a page as a user
//! would: the DOM after the browser parsed it, and a screenshot. No
//! JavaScript is needed by the pages tested, and the browser is kept off
//! the network (this machine's network is closed, and a report page must
//! not need it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser: `$KEYROTOR_CHROMIUM`, or `chromium` on the `PATH`.
pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYROTOR_CHROMIUM") {
        return p.into();
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    found.expect("chromium is not installed: scripts/test installs it (scripts/setup-browser)")
}

fn headless(profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// A fresh browser profile, removed when dropped.
struct Profile(PathBuf);

impl Profile {
    fn new() -> Profile {
        let dir = std::env::temp_dir().join(format!("keyrotor-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("browser profile directory");
        Profile(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The page's text as the browser rendered it: its DOM, without the tags.
pub fn page_text(page: &Path) -> String {
    let profile = Profile::new();
    let out = headless(&profile.0)
        .arg("--dump-dom")
        .arg(file_url(page))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text_of(&String::from_utf8_lossy(&out.stdout))
}

/// A PNG screenshot of the page in a `width` × `height` window.
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) {
    let profile = Profile::new();
    let out = headless(&profile.0)
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(file_url(page))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success() && png.is_file(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn file_url(page: &Path) -> String {
    let page = page.canonicalize().expect("the page exists");
    format!("file://{}", page.display())
}

/// The text of an HTML document: tags dropped (each counts as a space),
/// the few entities a page uses decoded, whitespace collapsed; the
/// contents of `<style>` are left out.
pub fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        text.push(' ');
        let after = &rest[open..];
        let skip_to = if after.starts_with("<style") {
            after.find("</style>").map(|i| i + "</style>".len())
        } else {
            after.find('>').map(|i| i + 1)
        };
        rest = &after[skip_to.unwrap_or(after.len())..];
    }
    text.push_str(rest);
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
