//! The digest's three templates (subject, HTML, text): built in, each
//! overridable by a file in `KEYROTOR_TEMPLATE_DIR`, compiled at start.

use std::path::Path;

use minijinja::{AutoEscape, Environment};

use super::context::Context;
use super::{AccountDigest, DigestError, RenderedEmail};

/// The built-in subject template.
pub const SUBJECT_TEMPLATE: &str = "digest.subject.j2";
/// The built-in HTML body template.
pub const HTML_TEMPLATE: &str = "digest.html.j2";
/// The built-in text body template.
pub const TEXT_TEMPLATE: &str = "digest.text.j2";

const BUILT_IN: [(&str, &str); 3] = [
    (
        SUBJECT_TEMPLATE,
        include_str!("../../templates/digest.subject.j2"),
    ),
    (
        HTML_TEMPLATE,
        include_str!("../../templates/digest.html.j2"),
    ),
    (
        TEXT_TEMPLATE,
        include_str!("../../templates/digest.text.j2"),
    ),
];

fn template_error(name: &str, e: minijinja::Error) -> DigestError {
    DigestError::Template {
        name: name.to_string(),
        message: format!("{e:#}"),
    }
}

/// The subject, HTML and text templates, compiled.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, each overridden by a file of the same name
    /// (`digest.subject.j2`, `digest.html.j2`, `digest.text.j2`) in `dir`
    /// (`KEYROTOR_TEMPLATE_DIR`) when there is one. Every template is
    /// compiled here, so a broken override fails at start.
    pub fn load(dir: Option<&Path>) -> Result<Templates, DigestError> {
        if let Some(dir) = dir {
            if !dir.is_dir() {
                return Err(DigestError::TemplateDir {
                    path: dir.to_path_buf(),
                    message: "not a directory".into(),
                });
            }
        }
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name == HTML_TEMPLATE {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for (name, built_in) in BUILT_IN {
            let source = match dir {
                Some(dir) => {
                    let path = dir.join(name);
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            tracing::info!(template = name, path = %path.display(), "template overridden");
                            text
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => built_in.to_string(),
                        Err(e) => {
                            return Err(DigestError::TemplateDir {
                                path,
                                message: e.to_string(),
                            })
                        }
                    }
                }
                None => built_in.to_string(),
            };
            env.add_template_owned(name, source)
                .map_err(|e| template_error(name, e))?;
        }
        Ok(Templates { env })
    }

    /// Renders `digest` (all its lines: see [`super::plan_emails`] for who gets
    /// which).
    pub fn render(&self, digest: &AccountDigest) -> Result<RenderedEmail, DigestError> {
        let mut ctx = Context::of(digest);
        let subject = self.render_one(SUBJECT_TEMPLATE, &ctx)?;
        // One line, whatever an override does with whitespace.
        ctx.subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(RenderedEmail {
            html: self.render_one(HTML_TEMPLATE, &ctx)?,
            text: self.render_one(TEXT_TEMPLATE, &ctx)?,
            subject: ctx.subject,
        })
    }

    fn render_one(&self, name: &str, ctx: &Context) -> Result<String, DigestError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| template_error(name, e))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use keyrotor_shared::domain::Mode;

    use super::*;
    use crate::digest::fixtures::{digest, rotated};

    #[test]
    fn html_escapes_user_names_text_does_not() {
        let t = Templates::load(None).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![rotated(
                "<script>alert(1)</script>",
                "AKIAOLD0000000000001",
                "AKIANEW0000000000001",
            )],
        );
        let email = t.render(&d).unwrap();
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(email.html.contains("&lt;script&gt;"), "{}", email.html);
        assert!(email.text.contains("<script>alert(1)</script>"));
        assert!(!email.subject.contains('\n'));
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "keyrotor-digest-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_override_file_replaces_only_its_template() {
        let dir = temp_dir("override");
        std::fs::write(
            dir.join(SUBJECT_TEMPLATE),
            "Key report for {{ account_name }}\n{{ summary }}\n",
        )
        .unwrap();
        let built_in = Templates::load(None).unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![rotated(
                "ci",
                "AKIAOLD0000000000001",
                "AKIANEW0000000000001",
            )],
        );
        let email = t.render(&d).unwrap();
        assert_eq!(email.subject, "Key report for prod 1 key rotated");
        let plain = built_in.render(&d).unwrap();
        assert_eq!(email.text, plain.text);
        // The HTML title shows the subject; the rest is the built-in body.
        assert_eq!(
            email.html.replace(&email.subject, "S"),
            plain.html.replace(&plain.subject, "S")
        );

        std::fs::write(dir.join(TEXT_TEMPLATE), "{% for l in lines %}").unwrap();
        let err = Templates::load(Some(&dir)).unwrap_err();
        assert!(
            matches!(&err, DigestError::Template { name, .. } if name == TEXT_TEMPLATE),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let err = Templates::load(Some(&dir)).unwrap_err();
        assert!(matches!(err, DigestError::TemplateDir { .. }), "{err}");
    }
}
