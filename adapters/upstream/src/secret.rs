use std::fmt;

/// A credential (password, token, signing key) that must never reach a log line.
///
/// `Debug` and `Display` print a placeholder; the value is reachable only through
/// [`Secret::expose`], so every place that uses the credential is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The credential itself, for the one call that sends it upstream.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/* REDACTED */")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/* REDACTED */")
    }
}

/// A credential read again at every login or request: an OAuth 2 access token that a
/// refresher outside the gateway keeps current (a file rewritten before each expiry, say).
#[derive(Clone)]
pub struct SecretProvider(std::sync::Arc<dyn Fn() -> Result<Secret<String>, String> + Send + Sync>);

impl SecretProvider {
    pub fn new(f: impl Fn() -> Result<Secret<String>, String> + Send + Sync + 'static) -> Self {
        SecretProvider(std::sync::Arc::new(f))
    }

    /// The current value, or why it cannot be had (a missing or empty token file).
    pub fn get(&self) -> Result<Secret<String>, String> {
        (self.0)()
    }
}

impl fmt::Debug for SecretProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretProvider")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "/* REDACTED */");
        assert_eq!(format!("{s}"), "/* REDACTED */");
        assert_eq!(format!("{:?}", Some(&s)), "Some(/* REDACTED */)");
        assert_eq!(s.expose(), "hunter2");
    }
}
